import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { act, fireEvent, render, screen, waitFor } from '@testing-library/react'
import { Composer } from '../src/components/Composer'
import { Markdown } from '../src/components/Markdown'
import { MessageView } from '../src/components/MessageView'
import { Sidebar, SEARCH_DEBOUNCE_MS } from '../src/components/Sidebar'
import { UsagePage } from '../src/pages/UsagePage'
import { LoginPage } from '../src/pages/LoginPage'
import { useConversations } from '../src/stores/conversations'
import { useAuth } from '../src/stores/auth'
import { useUi } from '../src/stores/ui'
import { tokens } from '../src/api/tokens'
import { en } from '../src/i18n/en'
import { ko } from '../src/i18n/ko'
import { detectLanguage, translate } from '../src/i18n'
import type { Conversation, Message } from '../src/api/types'
import { apiError, json, mockFetch, setTokens } from './helpers'

beforeEach(() => {
  useUi.setState({ language: 'en' })
})
afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
})

describe('Composer', () => {
  function setup(streaming = false) {
    const onSend = vi.fn()
    const onStop = vi.fn()
    render(<Composer streaming={streaming} stopping={false} onSend={onSend} onStop={onStop} />)
    return { onSend, onStop, box: screen.getByLabelText('Message') as HTMLTextAreaElement }
  }

  it('Enter sends and clears, Shift+Enter does not send', () => {
    const { onSend, box } = setup()
    fireEvent.change(box, { target: { value: 'line one' } })
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true })
    expect(onSend).not.toHaveBeenCalled()
    fireEvent.keyDown(box, { key: 'Enter' })
    expect(onSend).toHaveBeenCalledWith('line one')
    expect(box.value).toBe('')
  })

  it('does not send while an IME composes (Korean input)', () => {
    const { onSend, box } = setup()
    fireEvent.change(box, { target: { value: '안녕' } })
    fireEvent.keyDown(box, { key: 'Enter', isComposing: true })
    fireEvent.keyDown(box, { key: 'Enter', keyCode: 229 })
    expect(onSend).not.toHaveBeenCalled()
    fireEvent.keyDown(box, { key: 'Enter' })
    expect(onSend).toHaveBeenCalledWith('안녕')
  })

  it('ignores blank messages', () => {
    const { onSend, box } = setup()
    fireEvent.change(box, { target: { value: '   ' } })
    fireEvent.keyDown(box, { key: 'Enter' })
    expect(onSend).not.toHaveBeenCalled()
  })

  it('shows Stop while streaming', () => {
    const { onStop } = setup(true)
    fireEvent.click(screen.getByRole('button', { name: 'Stop generating' }))
    expect(onStop).toHaveBeenCalled()
    expect(screen.queryByRole('button', { name: 'Send message' })).toBeNull()
  })
})

describe('Markdown', () => {
  it('renders GFM tables, highlighted code with a copy button, and safe links', async () => {
    const writeText = vi.fn().mockResolvedValue(undefined)
    vi.stubGlobal('navigator', { ...navigator, clipboard: { writeText } })
    vi.stubGlobal('isSecureContext', true)
    const text = '| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\ndef f(x):\n    return x\n```\n\nSee [docs](https://example.com/docs).'
    const { container } = render(<Markdown text={text} />)
    expect(container.querySelectorAll('table td')).toHaveLength(2)
    const code = container.querySelector('code.language-python') as HTMLElement
    expect(code.querySelector('.hljs-keyword')?.textContent).toBe('def')
    const link = screen.getByRole('link', { name: 'docs' })
    expect(link.getAttribute('href')).toBe('https://example.com/docs')
    expect(link.getAttribute('rel')).toContain('noopener noreferrer')
    expect(link.getAttribute('target')).toBe('_blank')
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Copy code' }))
    })
    expect(writeText).toHaveBeenCalledWith('def f(x):\n    return x')
  })

  it('renders code in an unknown language as plain text', () => {
    const { container } = render(<Markdown text={'```nosuchlang\n<b>x</b>\n```'} />)
    expect(container.querySelector('pre')?.textContent).toBe('<b>x</b>')
    expect(container.querySelector('b')).toBeNull()
  })
})

describe('MessageView actions', () => {
  const base: Message = { id: 2, parent_id: 1, role: 'assistant', content: 'answer', status: 'complete', token_in: 1, token_out: 5, model: 'm', finish_reason: 'stop', error: null, created_at: '' }

  it('offers regenerate on answers and edit on user messages', () => {
    const onRegenerate = vi.fn()
    const onEdit = vi.fn()
    const { unmount } = render(<MessageView message={base} onRegenerate={onRegenerate} />)
    fireEvent.click(screen.getByRole('button', { name: 'Regenerate answer' }))
    expect(onRegenerate).toHaveBeenCalledWith(base)
    unmount()
    render(<MessageView message={{ ...base, role: 'user', content: 'question' }} onEdit={onEdit} />)
    fireEvent.click(screen.getByRole('button', { name: 'Edit message' }))
    const box = screen.getByLabelText('Edit your message')
    fireEvent.change(box, { target: { value: 'better question' } })
    fireEvent.click(screen.getByRole('button', { name: 'Send' }))
    expect(onEdit).toHaveBeenCalledWith(expect.objectContaining({ id: 2 }), 'better question')
  })

  it('switches between versions', () => {
    const onShowBranch = vi.fn()
    render(<MessageView message={base} siblings={{ index: 1, count: 3, previous: 7, next: 9 }} onShowBranch={onShowBranch} />)
    expect(screen.getByText('2/3')).toBeTruthy()
    fireEvent.click(screen.getByRole('button', { name: 'Next version' }))
    expect(onShowBranch).toHaveBeenCalledWith(9)
  })

  it('says the answer waits for the model, and how many are ahead', () => {
    const pending = { ...base, content: '', status: 'pending' }
    const { rerender } = render(<MessageView message={pending} streaming queuePosition={3} />)
    expect(screen.getByTestId('pending-note').textContent).toBe('Waiting for the model: 3 ahead…')
    rerender(<MessageView message={pending} streaming queuePosition={0} />)
    expect(screen.getByTestId('pending-note').textContent).toBe('Waiting for the model: next in line…')
    rerender(<MessageView message={pending} streaming queuePosition={null} />)
    expect(screen.getByTestId('pending-note').textContent).toBe('Thinking…')
  })

  it('marks stopped and failed answers', () => {
    const { rerender } = render(<MessageView message={{ ...base, status: 'interrupted' }} />)
    expect(screen.getByText('Stopped')).toBeTruthy()
    rerender(<MessageView message={{ ...base, status: 'error', error: 'engine down' }} />)
    expect(screen.getByRole('alert').textContent).toContain('engine down')
  })
})

function conv(id: string, title: string): Conversation {
  return { id, title, model: null, system_prompt: null, archived: false, created_at: '', updated_at: '' }
}

describe('Sidebar', () => {
  beforeEach(() => {
    setTokens()
    tokens.reload()
    useConversations.setState({ items: [], nextCursor: null, query: '', loaded: false, loading: false, error: null })
    useAuth.setState({ identity: { username: 'admin', role: 'admin', exp: null, user_id: 1 }, status: 'authenticated' })
  })

  it('lists, searches (debounced q), renames and deletes with confirmation', async () => {
    const { calls } = mockFetch({
      'GET /api/conversations': (call) =>
        call.url.includes('q=')
          ? json({ conversations: [conv('b', '날씨 이야기')], next_cursor: null })
          : json({ conversations: [conv('a', 'First chat'), conv('b', '날씨 이야기')], next_cursor: 'cur1' }),
      'PATCH /api/conversations/a': (call) => json({ ...conv('a', (call.body as { title: string }).title) }),
      'DELETE /api/conversations/b': () => new Response(null, { status: 204 }),
    })
    render(<Sidebar />)
    await screen.findByText('First chat')
    expect(screen.getByRole('link', { name: 'Users' })).toBeTruthy()

    fireEvent.click(screen.getByRole('button', { name: 'Rename: First chat' }))
    const input = screen.getByLabelText('New title')
    fireEvent.change(input, { target: { value: 'Renamed' } })
    fireEvent.keyDown(input, { key: 'Enter' })
    await screen.findByText('Renamed')
    expect(calls.filter((c) => c.method === 'PATCH')).toHaveLength(1)
    expect(calls.find((c) => c.method === 'PATCH')?.body).toEqual({ title: 'Renamed' })

    fireEvent.click(screen.getByRole('button', { name: 'Delete: 날씨 이야기' }))
    const dialog = screen.getByRole('dialog', { name: 'Delete conversation?' })
    expect(dialog).toBeTruthy()
    fireEvent.click(screen.getByRole('button', { name: 'Cancel' }))
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false)
    fireEvent.click(screen.getByRole('button', { name: 'Delete: 날씨 이야기' }))
    fireEvent.click(screen.getAllByRole('button', { name: 'Delete' }).at(-1) as HTMLElement)
    await waitFor(() => expect(screen.queryByText('날씨 이야기')).toBeNull())
    expect(calls.some((c) => c.method === 'DELETE' && c.url === '/api/conversations/b')).toBe(true)

    fireEvent.change(screen.getByLabelText('Search conversations'), { target: { value: '날씨' } })
    fireEvent.change(screen.getByLabelText('Search conversations'), { target: { value: '날씨 ' } })
    await new Promise((r) => setTimeout(r, SEARCH_DEBOUNCE_MS + 100))
    const searches = calls.filter((c) => c.url.includes('q='))
    expect(searches).toHaveLength(1)
    expect(decodeURIComponent(searches[0]?.url.split('q=')[1] ?? '').replace(/\+/g, ' ')).toBe('날씨')
  })

  it('loads the next page with the cursor', async () => {
    const { calls } = mockFetch({
      'GET /api/conversations': [
        () => json({ conversations: [conv('a', 'A')], next_cursor: 'cur1' }),
        () => json({ conversations: [conv('z', 'Z')], next_cursor: null }),
      ],
    })
    render(<Sidebar />)
    await screen.findByText('A')
    fireEvent.click(screen.getByRole('button', { name: 'Load more' }))
    await screen.findByText('Z')
    expect(calls[1]?.url).toContain('before=cur1')
    expect(screen.queryByRole('button', { name: 'Load more' })).toBeNull()
  })
})

describe('UsagePage', () => {
  beforeEach(() => {
    setTokens()
    tokens.reload()
    useAuth.setState({ identity: { username: 'admin', role: 'admin', exp: null, user_id: 1 }, status: 'authenticated' })
  })

  it('says "not available yet" when the usage API is missing (404)', async () => {
    mockFetch({ 'GET /api/usage': () => apiError(404, 'not_found'), 'GET /api/usage/summary': () => apiError(404, 'not_found') })
    render(<UsagePage />)
    expect(await screen.findByText('Usage reporting is not available yet')).toBeTruthy()
  })

  it('shows totals, groups, recent rows, filters and a CSV download', async () => {
    const group = { key: '2026-01-01', label: '2026-01-01', requests: 3, ok: 2, error: 1, other: 0, prompt_tokens: 10, completion_tokens: 20, total_tokens: 30, avg_latency_ms: 1500, max_latency_ms: 2000, avg_ttft_ms: 40 }
    const row = { id: 1, request_id: 'r', created_at: '2026-01-01T10:00:00Z', user_id: 1, username: 'admin', api_key_id: null, api_key_name: null, route: 'chat', model: 'smollm2-135m', engine: 'e', status: 'ok', status_code: 200, finish_reason: 'stop', prompt_tokens: 10, completion_tokens: 20, total_tokens: 30, ttft_ms: 40, latency_ms: 1500, error: null }
    const { calls } = mockFetch({
      'GET /api/usage/summary': () => json({ group_by: 'day', since: null, until: null, groups: [group], totals: { ...group, key: null, label: null } }),
      'GET /api/usage': () => json({ rows: [row], next_cursor: null }),
      'GET /api/usage.csv': () => new Response('a,b\n', { headers: { 'content-type': 'text/csv' } }),
    })
    URL.createObjectURL = vi.fn(() => 'blob:x')
    URL.revokeObjectURL = vi.fn()
    render(<UsagePage />)
    expect(await screen.findByText('Recent requests')).toBeTruthy()
    expect(screen.getAllByText('2026-01-01').length).toBeGreaterThan(0)
    expect(screen.getAllByText('1.50 s').length).toBeGreaterThan(0)
    fireEvent.change(screen.getByLabelText('From'), { target: { value: '2026-01-01' } })
    fireEvent.change(screen.getByLabelText('Until'), { target: { value: '2026-01-31' } })
    fireEvent.click(screen.getByRole('button', { name: 'Apply' }))
    await waitFor(() => expect(calls.some((c) => c.url.includes('since=2026-01-01T00'))).toBe(true))
    const filtered = calls.filter((c) => c.url.startsWith('/api/usage/summary')).at(-1)
    expect(decodeURIComponent(filtered?.url ?? '')).toContain('until=2026-02-01T00:00:00.000Z')
    fireEvent.click(screen.getByRole('button', { name: 'Download CSV' }))
    await waitFor(() => expect(calls.some((c) => c.url.startsWith('/api/usage.csv?since='))).toBe(true))
  })
})

describe('LoginPage', () => {
  it('shows the gateway error on a failed sign-in', async () => {
    mockFetch({ 'POST /api/auth/login': () => apiError(401, 'invalid_credentials', 'Invalid username or password') })
    render(<LoginPage />)
    fireEvent.change(screen.getByLabelText('Username'), { target: { value: 'admin' } })
    fireEvent.change(screen.getByLabelText('Password'), { target: { value: 'wrong' } })
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }))
    expect((await screen.findByRole('alert')).textContent).toBe('Invalid username or password')
  })
})

describe('i18n', () => {
  it('has every English key in Korean, none empty', () => {
    expect(Object.keys(ko).sort()).toEqual(Object.keys(en).sort())
    for (const value of Object.values(ko)) expect(value.trim()).not.toBe('')
  })

  it('keeps the same placeholders in both languages', () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      const names = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort()
      expect(names(ko[key]), key).toEqual(names(en[key]))
    }
  })

  it('picks the browser language and interpolates', () => {
    expect(detectLanguage(['ko-KR', 'en-US'])).toBe('ko')
    expect(detectLanguage(['fr-FR', 'en-GB'])).toBe('en')
    expect(detectLanguage(['de'])).toBe('en')
    expect(translate('ko', 'chat.branch', { index: 1, count: 2 })).toBe('2개 중 1번째 버전')
  })

  it('switches the UI language', () => {
    render(<LoginPage />)
    fireEvent.change(screen.getByLabelText('Language'), { target: { value: 'ko' } })
    expect(screen.getByRole('button', { name: '로그인' })).toBeTruthy()
  })
})
