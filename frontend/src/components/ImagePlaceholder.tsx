import { useState } from 'react'
import { ExternalLink, ImageOff } from 'lucide-react'
import { safeImageUrl } from '../lib/urls'
import { useT } from '../i18n'

/**
 * Stands in for an image in model output. Remote images are never fetched by the
 * page (that could leak the conversation through the URL); the user may reveal the
 * address and open it in a new tab, without referrer.
 */
export function ImagePlaceholder({ src, alt }: { src: string; alt: string }) {
  const t = useT()
  const [shown, setShown] = useState(false)
  const url = safeImageUrl(src)
  return (
    <span className="not-prose my-2 inline-flex max-w-full flex-col gap-1 rounded-lg border border-dashed border-zinc-300 bg-zinc-50 px-3 py-2 align-middle text-sm text-zinc-600 dark:border-zinc-600 dark:bg-zinc-800 dark:text-zinc-300">
      <span className="inline-flex items-center gap-2">
        <ImageOff className="size-4 shrink-0" aria-hidden />
        <span>
          {t('image.blocked')}
          {alt ? `: ${alt}` : ''}
        </span>
        {!shown && (
          <button
            type="button"
            className="rounded px-1.5 py-0.5 text-xs font-medium text-accent-700 underline hover:bg-zinc-200 dark:text-accent-500 dark:hover:bg-zinc-700"
            onClick={() => setShown(true)}
            title={t('image.hint')}
          >
            {t('image.show')}
          </button>
        )}
      </span>
      {shown && (
        <span className="flex items-center gap-2 break-all font-mono text-xs">
          <span data-testid="image-url">{src}</span>
          {url && (
            <a
              href={url}
              target="_blank"
              rel="noopener noreferrer nofollow"
              className="inline-flex shrink-0 items-center gap-1 text-accent-700 underline dark:text-accent-500"
              aria-label={t('image.open')}
            >
              <ExternalLink className="size-3.5" aria-hidden />
            </a>
          )}
        </span>
      )}
    </span>
  )
}
