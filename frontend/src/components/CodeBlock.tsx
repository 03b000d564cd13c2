import { useMemo, useState } from 'react'
import { Fragment, jsx, jsxs } from 'react/jsx-runtime'
import { toJsxRuntime } from 'hast-util-to-jsx-runtime'
import { createLowlight, common } from 'lowlight'
import { Check, Copy } from 'lucide-react'
import { copyText } from '../lib/clipboard'
import { useT } from '../i18n'

const lowlight = createLowlight(common)
/** Longer code is shown without colours (highlighting cost grows with size). */
const MAX_HIGHLIGHT_CHARS = 100_000

/** Highlights into React elements (spans with hljs-* classes); never HTML strings. */
export function highlight(code: string, language: string | null): React.ReactNode {
  if (!language || code.length > MAX_HIGHLIGHT_CHARS) return code
  const name = language.toLowerCase()
  if (!lowlight.registered(name)) return code
  try {
    return toJsxRuntime(lowlight.highlight(name, code), { Fragment, jsx, jsxs })
  } catch {
    return code
  }
}

export function CodeBlock({ code, language }: { code: string; language: string | null }) {
  const t = useT()
  const [copied, setCopied] = useState(false)
  const content = useMemo(() => highlight(code, language), [code, language])

  async function onCopy() {
    if (await copyText(code)) {
      setCopied(true)
      setTimeout(() => setCopied(false), 1500)
    }
  }

  return (
    <div className="not-prose my-3 overflow-hidden rounded-lg border border-zinc-200 bg-zinc-50 dark:border-zinc-700 dark:bg-zinc-950">
      <div className="flex items-center justify-between border-b border-zinc-200 bg-zinc-100 px-3 py-1 text-xs text-zinc-600 dark:border-zinc-700 dark:bg-zinc-800 dark:text-zinc-300">
        <span className="font-mono">{language ?? 'text'}</span>
        <button
          type="button"
          onClick={onCopy}
          className="inline-flex items-center gap-1 rounded px-1.5 py-0.5 hover:bg-zinc-200 dark:hover:bg-zinc-700"
          aria-label={t('code.copy')}
        >
          {copied ? <Check className="size-3.5" aria-hidden /> : <Copy className="size-3.5" aria-hidden />}
          <span aria-live="polite">{copied ? t('code.copied') : t('common.copy')}</span>
        </button>
      </div>
      <pre className="overflow-x-auto p-3 text-[13px] leading-relaxed" tabIndex={0}>
        <code className={`hljs font-mono${language ? ` language-${language}` : ''}`}>{content}</code>
      </pre>
    </div>
  )
}
