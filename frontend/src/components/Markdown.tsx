// Renders untrusted model output. No raw HTML (no rehype-raw: HTML in the text
// is shown as text), links only for http(s)/mailto and opened in a new tab
// without referrer or opener, images never loaded (a placeholder instead).

import { isValidElement, memo, type ReactElement, type ReactNode } from 'react'
import ReactMarkdown, { defaultUrlTransform, type Components } from 'react-markdown'
import remarkGfm from 'remark-gfm'
import { CodeBlock } from './CodeBlock'
import { ImagePlaceholder } from './ImagePlaceholder'
import { safeLinkUrl } from '../lib/urls'

function textOf(node: ReactNode): string {
  if (typeof node === 'string' || typeof node === 'number') return String(node)
  if (Array.isArray(node)) return node.map(textOf).join('')
  if (isValidElement<{ children?: ReactNode }>(node)) return textOf(node.props.children)
  return ''
}

const components: Components = {
  a({ href, children }) {
    const safe = safeLinkUrl(href)
    if (!safe) return <span className="underline decoration-dotted">{children}</span>
    return (
      <a href={safe} target="_blank" rel="noopener noreferrer nofollow">
        {children}
      </a>
    )
  },
  img({ src, alt }) {
    return <ImagePlaceholder src={typeof src === 'string' ? src : ''} alt={alt ?? ''} />
  },
  pre({ children }) {
    const child = (Array.isArray(children) ? children[0] : children) as ReactElement<{
      className?: string
      children?: ReactNode
    }>
    const className = isValidElement(child) ? (child.props.className ?? '') : ''
    const language = /language-([\w+#.-]+)/.exec(className)?.[1] ?? null
    const code = textOf(isValidElement(child) ? child.props.children : children).replace(/\n$/, '')
    return <CodeBlock code={code} language={language} />
  },
  table({ children }) {
    return (
      // Focusable so a keyboard can scroll a wide table.
      <div className="my-3 overflow-x-auto" tabIndex={0}>
        <table>{children}</table>
      </div>
    )
  },
}


export const Markdown = memo(function Markdown({ text, className }: { text: string; className?: string }) {
  return (
    <div className={`markdown ${className ?? ''}`}>
      <ReactMarkdown remarkPlugins={[remarkGfm]} components={components} urlTransform={defaultUrlTransform}>
        {text}
      </ReactMarkdown>
    </div>
  )
})
