// Model output is untrusted: only these URL schemes become links.
const SAFE_LINK = /^(https?:|mailto:)/i

/** The URL if it is safe to link to, else null (javascript:, data:, vbscript:, file:, …). */
export function safeLinkUrl(url: string | null | undefined): string | null {
  if (!url) return null
  // Browsers ignore control characters and whitespace inside schemes ("java\tscript:").
  const cleaned = url.replace(/[\u0000-\u0020\u007f-\u009f]/g, '')
  // Relative links are not offered either: they would point into this app.
  return SAFE_LINK.test(cleaned) ? cleaned : null
}

/** Only http(s) image addresses are offered (as a link, never loaded inline). */
export function safeImageUrl(url: string | null | undefined): string | null {
  const safe = safeLinkUrl(url)
  return safe && /^https?:/i.test(safe) ? safe : null
}

export function formatDate(iso: string | null | undefined, language: string): string {
  if (!iso) return ''
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return ''
  return date.toLocaleString(language === 'ko' ? 'ko-KR' : 'en-US', {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  })
}
