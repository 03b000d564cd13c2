import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { useChat, resetChatModule } from '../src/stores/chat'
import { useConversations } from '../src/stores/conversations'
import { tokens } from '../src/api/tokens'
import type { ConversationDetail, Message } from '../src/api/types'
import { apiError, chunk, json, mockFetch, setTokens, sseResponse, tick, waitFor } from './helpers'

const conversationEvent = {
  conversation_id: 'c1',
  generation_id: 'g1',
  user_message_id: 11,
  assistant_message_id: 12,
  title: 'Hello',
  model: 'smollm2-135m',
}

function message(id: number, parent: number | null, role: string, content: string, status = 'complete'): Message {
  return { id, parent_id: parent, role, content, status, token_in: null, token_out: null, model: null, finish_reason: null, error: null, created_at: '2026-01-01T00:00:00Z' }
}

function detail(messages: Message[], active: string | null = null): ConversationDetail {
  return { id: 'c1', title: 'Hello', model: 'smollm2-135m', system_prompt: null, archived: false, created_at: '', updated_at: '', messages, active_generation_id: active }
}

const visible = () => {
  const { messages, leafId } = useChat.getState()
  const out: Message[] = []
  let current = leafId === null ? undefined : messages[leafId]
  while (current) {
    out.unshift(current)
    current = current.parent_id === null ? undefined : messages[current.parent_id]
  }
  return out.map((m) => `${m.role}:${m.content}`)
}

beforeEach(async () => {
  setTokens()
  tokens.reload()
  resetChatModule()
  useConversations.setState({ items: [], query: '', loaded: true })
  useChat.setState({ params: { temperature: null, top_p: null, max_tokens: null }, model: null })
  await useChat.getState().open(null)
})
afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
})

describe('chat store', () => {
  it('streams an answer into a new conversation', async () => {
    const sse = sseResponse()
    const { calls } = mockFetch({
      'POST /api/chat': () => sse.response,
      'GET /api/conversations/c1': () => json(detail([message(11, null, 'user', '안녕하세요! 오늘 날씨 어때요?'), message(12, 11, 'assistant', 'Sunny **today**.')])),
    })
    useChat.setState({ systemPrompt: 'Be brief.', params: { temperature: 0.5, top_p: null, max_tokens: 64 } })
    const sending = useChat.getState().send('안녕하세요! 오늘 날씨 어때요?')
    await waitFor(() => calls.length === 1)
    expect(calls[0]?.body).toEqual({ message: '안녕하세요! 오늘 날씨 어때요?', system_prompt: 'Be brief.', temperature: 0.5, max_tokens: 64 })
    expect(useChat.getState().streaming).toBe(true)
    expect(visible()).toEqual(['user:안녕하세요! 오늘 날씨 어때요?', 'assistant:'])

    sse.event(1, 'conversation', conversationEvent)
    sse.event(2, null, chunk('Sunny '))
    sse.event(3, null, chunk('**today**.'))
    await waitFor(() => useChat.getState().messages[12]?.content === 'Sunny **today**.')
    expect(useChat.getState().conversationId).toBe('c1')
    expect(useConversations.getState().items[0]?.id).toBe('c1')
    expect(location.pathname).toBe('/c/c1')

    sse.event(4, 'usage', { prompt_tokens: 5, completion_tokens: 3 })
    sse.event(5, 'done', { status: 'complete', finish_reason: 'stop', message_id: 12, conversation_id: 'c1' })
    sse.close()
    await sending
    expect(useChat.getState().streaming).toBe(false)
    expect(useChat.getState().messages[12]?.status).toBe('complete')
    expect(useChat.getState().usage).toEqual({ prompt_tokens: 5, completion_tokens: 3 })
  })

  it('tells how many requests are ahead while the answer waits for an engine slot', async () => {
    const sse = sseResponse()
    mockFetch({
      'POST /api/chat': () => sse.response,
      'GET /api/conversations/c1': () => json(detail([message(11, null, 'user', 'Hi'), message(12, 11, 'assistant', 'Hello')])),
    })
    const sending = useChat.getState().send('Hi')
    sse.event(1, 'conversation', conversationEvent)
    sse.event(2, 'queue', { position: 2, model: 'smollm2-135m' })
    await waitFor(() => useChat.getState().queuePosition === 2)
    sse.event(3, 'queue', { position: 0, model: 'smollm2-135m' })
    await waitFor(() => useChat.getState().queuePosition === 0)
    sse.event(4, null, chunk('Hello'))
    await waitFor(() => useChat.getState().queuePosition === null)
    sse.event(5, 'done', { status: 'complete', finish_reason: 'stop', message_id: 12, conversation_id: 'c1' })
    sse.close()
    await sending
    expect(useChat.getState().queuePosition).toBeNull()
    expect(useChat.getState().messages[12]?.content).toBe('Hello')
  })

  it('reconnects with Last-Event-ID after the connection drops, without duplicates', async () => {
    const first = sseResponse()
    const second = sseResponse()
    const { calls } = mockFetch({
      'POST /api/chat': () => first.response,
      'GET /api/chat/g1/stream': () => second.response,
      'GET /api/conversations/c1': () => json(detail([])),
    })
    const sending = useChat.getState().send('hi')
    await waitFor(() => calls.length === 1)
    first.event(1, 'conversation', conversationEvent)
    first.event(2, null, chunk('one '))
    await waitFor(() => useChat.getState().messages[12]?.content === 'one ')
    first.fail()
    await waitFor(() => calls.some((c) => c.url === '/api/chat/g1/stream'), 3000)
    expect(calls.find((c) => c.url === '/api/chat/g1/stream')?.headers.get('last-event-id')).toBe('2')
    second.event(2, null, chunk('one ')) // a replayed event is skipped
    second.event(3, null, chunk('two'))
    second.event(4, 'done', { status: 'complete', finish_reason: 'stop', message_id: 12, conversation_id: 'c1' })
    second.close()
    await sending
    expect(useChat.getState().messages[12]?.content).toBe('one two')
  })

  it('stop calls the stop endpoint and ends as interrupted', async () => {
    const sse = sseResponse()
    const { calls } = mockFetch({
      'POST /api/chat': () => sse.response,
      'POST /api/chat/g1/stop': () => {
        sse.event(3, 'done', { status: 'interrupted', finish_reason: null, message_id: 12, conversation_id: 'c1' })
        sse.close()
        return json({ generation_id: 'g1', stopped: true })
      },
      'GET /api/conversations/c1': () => json(detail([])),
    })
    const sending = useChat.getState().send('write a long story')
    await waitFor(() => calls.length === 1)
    sse.event(1, 'conversation', conversationEvent)
    sse.event(2, null, chunk('Once upon'))
    await waitFor(() => useChat.getState().messages[12]?.content === 'Once upon')
    await useChat.getState().stop()
    await sending
    expect(calls.some((c) => c.method === 'POST' && c.url === '/api/chat/g1/stop')).toBe(true)
    expect(useChat.getState().messages[12]?.status).toBe('interrupted')
    expect(useChat.getState().streaming).toBe(false)
  })

  it('a stop pressed before the first event is sent once the generation is known', async () => {
    const sse = sseResponse()
    const { calls } = mockFetch({
      'POST /api/chat': () => sse.response,
      'POST /api/chat/g1/stop': () => json({ generation_id: 'g1', stopped: true }),
    })
    void useChat.getState().send('hi')
    await waitFor(() => calls.length === 1)
    await useChat.getState().stop()
    expect(calls).toHaveLength(1)
    sse.event(1, 'conversation', conversationEvent)
    await waitFor(() => calls.some((c) => c.url === '/api/chat/g1/stop'))
    useChat.getState().detach()
  })

  it('reattaches to a running generation on load and replaces the pending text', async () => {
    const sse = sseResponse()
    const { calls } = mockFetch({
      'GET /api/conversations/c1': [
        () => json(detail([message(11, null, 'user', 'hi'), message(12, 11, 'assistant', 'stale partial', 'pending')], 'g1')),
        () => json(detail([message(11, null, 'user', 'hi'), message(12, 11, 'assistant', 'Hello there', 'complete')])),
      ],
      'GET /api/chat/g1/stream': () => sse.response,
    })
    await useChat.getState().open('c1')
    expect(useChat.getState().streaming).toBe(true)
    expect(useChat.getState().messages[12]?.content).toBe('')
    const resume = calls.find((c) => c.url === '/api/chat/g1/stream')
    expect(resume?.headers.get('last-event-id')).toBe('0')
    sse.event(1, 'conversation', conversationEvent)
    sse.event(2, null, chunk('Hello'))
    sse.event(3, null, chunk(' there'))
    sse.event(4, 'done', { status: 'complete', finish_reason: 'stop', message_id: 12, conversation_id: 'c1' })
    sse.close()
    await waitFor(() => !useChat.getState().streaming)
    expect(useChat.getState().messages[12]?.content).toBe('Hello there')
    expect(visible()).toEqual(['user:hi', 'assistant:Hello there'])
  })

  it('takes the optimistic messages back when the gateway refuses (409)', async () => {
    mockFetch({
      'GET /api/conversations/c1': () => json(detail([message(11, null, 'user', 'hi'), message(12, 11, 'assistant', 'yo')])),
      'POST /api/chat': () => apiError(409, 'generation_running'),
    })
    await useChat.getState().open('c1')
    await useChat.getState().send('again')
    expect(visible()).toEqual(['user:hi', 'assistant:yo'])
    expect(useChat.getState().banner).toBe('generation_running')
    expect(useChat.getState().streaming).toBe(false)
  })

  it('regenerate and edit-and-resend send parent_id and branch the tree', async () => {
    const regen = sseResponse()
    const edit = sseResponse()
    const server = [message(11, null, 'user', 'hi'), message(12, 11, 'assistant', 'yo')]
    const { calls } = mockFetch({
      'GET /api/conversations/c1': () => json(detail(server)),
      'POST /api/chat': [() => regen.response, () => edit.response],
    })
    await useChat.getState().open('c1')

    void useChat.getState().regenerate(11)
    await waitFor(() => calls.filter((c) => c.method === 'POST').length === 1)
    expect(calls.at(-1)?.body).toEqual({ conversation_id: 'c1', parent_id: 11, regenerate: true, model: 'smollm2-135m' })
    regen.event(1, 'conversation', { ...conversationEvent, user_message_id: 11, assistant_message_id: 13 })
    regen.event(2, null, chunk('hey'))
    server.push(message(13, 11, 'assistant', 'hey'))
    regen.event(3, 'done', { status: 'complete', finish_reason: 'stop', message_id: 13, conversation_id: 'c1' })
    regen.close()
    await waitFor(() => !useChat.getState().streaming)
    await tick(10)
    expect(visible()).toEqual(['user:hi', 'assistant:hey'])
    expect(Object.keys(useChat.getState().messages).sort()).toEqual(['11', '12', '13'])

    void useChat.getState().editAndResend(11, 'hello')
    await waitFor(() => calls.filter((c) => c.method === 'POST').length === 2)
    expect(calls.at(-1)?.body).toEqual({ conversation_id: 'c1', parent_id: null, message: 'hello', model: 'smollm2-135m' })
    edit.event(1, 'conversation', { ...conversationEvent, user_message_id: 14, assistant_message_id: 15 })
    edit.event(2, null, chunk('hi!'))
    server.push(message(14, null, 'user', 'hello'), message(15, 14, 'assistant', 'hi!'))
    edit.event(3, 'done', { status: 'complete', finish_reason: 'stop', message_id: 15, conversation_id: 'c1' })
    edit.close()
    await waitFor(() => !useChat.getState().streaming)
    await tick(10)
    expect(visible()).toEqual(['user:hello', 'assistant:hi!'])
    expect(useChat.getState().messages[14]?.parent_id).toBeNull()

    useChat.getState().showBranch(11)
    expect(visible()).toEqual(['user:hi', 'assistant:hey'])
  })

  it('continuing an older branch names it as parent_id', async () => {
    const sse = sseResponse()
    const { calls } = mockFetch({
      'GET /api/conversations/c1': () =>
        json(detail([message(11, null, 'user', 'a'), message(12, 11, 'assistant', 'b'), message(13, null, 'user', 'c'), message(14, 13, 'assistant', 'd')])),
      'POST /api/chat': () => sse.response,
    })
    await useChat.getState().open('c1')
    expect(visible()).toEqual(['user:c', 'assistant:d'])
    useChat.getState().showBranch(11)
    void useChat.getState().send('next')
    await waitFor(() => calls.some((c) => c.method === 'POST'))
    expect(calls.at(-1)?.body).toMatchObject({ conversation_id: 'c1', parent_id: 12, message: 'next' })
    useChat.getState().detach()
  })

  it('shows an error event on the message', async () => {
    const sse = sseResponse()
    mockFetch({ 'POST /api/chat': () => sse.response, 'GET /api/conversations/c1': () => json(detail([])) })
    const sending = useChat.getState().send('hi')
    await tick(10)
    sse.event(1, 'conversation', conversationEvent)
    sse.event(2, 'error', { error: { message: 'engine down', code: 'engine_error' } })
    sse.event(3, 'done', { status: 'error', finish_reason: null, message_id: 12, conversation_id: 'c1' })
    sse.close()
    await sending
    expect(useChat.getState().messages[12]).toMatchObject({ status: 'error', error: 'engine down' })
  })
})
