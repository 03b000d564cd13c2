// The open conversation: its message tree, the branch on screen, the running
// generation (streamed over SSE, resumed with Last-Event-ID), and the options
// the next turn is sent with.

import { create } from 'zustand'
import { api, ApiError } from '../api'
import { readSSE } from '../api/sse'
import type {
  ChatRequest,
  ChunkEvent,
  Conversation,
  ConversationDetail,
  ConversationEvent,
  DoneEvent,
  Message,
  UsageEvent,
} from '../api/types'
import { newestDescendant, newestMessage, type MessageMap } from '../lib/tree'
import { conversationPath, navigate, useRouter } from './router'
import { useConversations } from './conversations'

export interface Params {
  temperature: number | null
  top_p: number | null
  max_tokens: number | null
}

export const EMPTY_PARAMS: Params = { temperature: null, top_p: null, max_tokens: null }

type Status = 'empty' | 'loading' | 'ready' | 'notFound' | 'error'

export interface ChatState {
  conversationId: string | null
  conversation: Conversation | null
  messages: MessageMap
  leafId: number | null
  status: Status
  loadError: string | null
  /** A generation is attached (sending, streaming or reconnecting). */
  streaming: boolean
  streamingMessageId: number | null
  reconnecting: boolean
  stopping: boolean
  /** A problem with the last action (409, 4xx/5xx), shown above the composer. */
  banner: string | null
  usage: UsageEvent | null
  /** While the answer waits for a free engine slot: how many requests are ahead of it. */
  queuePosition: number | null
  model: string | null
  params: Params
  /** The system prompt of the open conversation, or the draft for a new chat. */
  systemPrompt: string

  open(conversationId: string | null): Promise<void>
  send(text: string): Promise<void>
  regenerate(userMessageId: number): Promise<void>
  editAndResend(messageId: number, text: string): Promise<void>
  stop(): Promise<void>
  showBranch(messageId: number): void
  setModel(model: string | null): void
  setParams(params: Partial<Params>): void
  resetParams(): void
  saveSystemPrompt(text: string): Promise<void>
  dismissBanner(): void
  /** Detaches from a running stream without stopping it (the server keeps generating). */
  detach(): void
}

interface ActiveStream {
  controller: AbortController
  generationId: string | null
  conversationId: string | null
  assistantId: number
  userTempId: number | null
  lastEventId: number
  stopRequested: boolean
  pendingText: string
  flushTimer: ReturnType<typeof setTimeout> | null
  isNew: boolean
}

let active: ActiveStream | null = null
let tempCounter = 0
const tempId = (): number => -++tempCounter

/** How long to wait between reconnect attempts (ms), by attempt number. */
export const RECONNECT_DELAYS = [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000]
const FLUSH_MS = 40

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      resolve()
    })
  })

function messageText(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}

function toMap(messages: Message[]): MessageMap {
  const map: MessageMap = {}
  for (const message of messages) map[message.id] = message
  return map
}

function paramsBody(params: Params): Partial<ChatRequest> {
  const body: Partial<ChatRequest> = {}
  if (params.temperature !== null) body.temperature = params.temperature
  if (params.top_p !== null) body.top_p = params.top_p
  if (params.max_tokens !== null) body.max_tokens = params.max_tokens
  return body
}

export const useChat = create<ChatState>((set, get) => {
  const isActive = (stream: ActiveStream): boolean => active === stream

  function updateMessage(id: number, patch: Partial<Message> | ((m: Message) => Partial<Message>)): void {
    const current = get().messages[id]
    if (!current) return
    const change = typeof patch === 'function' ? patch(current) : patch
    set({ messages: { ...get().messages, [id]: { ...current, ...change } } })
  }

  function flush(stream: ActiveStream): void {
    if (stream.flushTimer) clearTimeout(stream.flushTimer)
    stream.flushTimer = null
    if (!stream.pendingText || !isActive(stream)) return
    const text = stream.pendingText
    stream.pendingText = ''
    updateMessage(stream.assistantId, (m) => ({ content: m.content + text }))
  }

  function appendText(stream: ActiveStream, text: string): void {
    stream.pendingText += text
    if (!stream.flushTimer) stream.flushTimer = setTimeout(() => flush(stream), FLUSH_MS)
  }

  function finishStream(stream: ActiveStream): void {
    flush(stream)
    if (!isActive(stream)) return
    active = null
    set({ streaming: false, streamingMessageId: null, reconnecting: false, stopping: false, queuePosition: null })
  }

  function onConversation(stream: ActiveStream, event: ConversationEvent): void {
    stream.generationId = event.generation_id
    stream.conversationId = event.conversation_id
    const state = get()
    const messages = { ...state.messages }
    const userId = event.user_message_id
    let userParent: number | null = null
    if (stream.userTempId !== null && userId !== null && messages[stream.userTempId]) {
      const temp = messages[stream.userTempId] as Message
      delete messages[stream.userTempId]
      messages[userId] = { ...temp, id: userId }
      userParent = userId
      stream.userTempId = null
    }
    const assistant = messages[stream.assistantId]
    if (assistant && stream.assistantId !== event.assistant_message_id) {
      delete messages[stream.assistantId]
      messages[event.assistant_message_id] = {
        ...assistant,
        id: event.assistant_message_id,
        parent_id: userParent ?? userId ?? assistant.parent_id,
        model: event.model,
      }
    }
    stream.assistantId = event.assistant_message_id
    const patch: Partial<ChatState> = {
      messages,
      leafId: event.assistant_message_id,
      streamingMessageId: event.assistant_message_id,
    }
    if (stream.isNew && state.conversationId === null) {
      const now = new Date().toISOString()
      const conversation: Conversation = {
        id: event.conversation_id,
        title: event.title,
        model: event.model,
        system_prompt: state.systemPrompt.trim() || null,
        archived: false,
        created_at: now,
        updated_at: now,
      }
      patch.conversationId = event.conversation_id
      patch.conversation = conversation
      patch.status = 'ready'
      useConversations.getState().upsert(conversation, { toTop: true })
      set(patch)
      const route = useRouter.getState().route
      if (route.name === 'chat' && route.conversationId === null) {
        navigate(conversationPath(event.conversation_id), { replace: true })
      }
    } else {
      set(patch)
    }
    if (stream.stopRequested && stream.generationId) void api.stop(stream.generationId).catch(() => undefined)
  }

  /** Reads one SSE response; 'done' when the final event arrived, 'eof' when the connection ended early. */
  async function consume(stream: ActiveStream, response: Response): Promise<'done' | 'eof'> {
    if (!response.body) return 'eof'
    for await (const event of readSSE(response.body)) {
      if (!isActive(stream)) return 'done'
      if (event.id !== null) {
        if (event.id <= stream.lastEventId) continue
        stream.lastEventId = event.id
      }
      let data: unknown
      try {
        data = JSON.parse(event.data)
      } catch {
        continue
      }
      switch (event.event) {
        case 'conversation':
          onConversation(stream, data as ConversationEvent)
          break
        case 'queue':
          set({ queuePosition: (data as { position?: number }).position ?? 0 })
          break
        case null:
        case 'message': {
          const content = (data as ChunkEvent).choices?.[0]?.delta?.content
          if (get().queuePosition !== null) set({ queuePosition: null })
          if (content) appendText(stream, content)
          break
        }
        case 'usage':
          set({ usage: data as UsageEvent })
          break
        case 'error': {
          flush(stream)
          const error = (data as { error?: { message?: string } }).error
          updateMessage(stream.assistantId, { status: 'error', error: error?.message ?? 'error' })
          break
        }
        case 'done': {
          flush(stream)
          const done = data as DoneEvent
          updateMessage(stream.assistantId, (m) => ({
            status: done.status,
            finish_reason: done.finish_reason,
            error: done.status === 'error' ? (m.error ?? 'error') : m.error,
          }))
          return 'done'
        }
        default:
          break
      }
    }
    return 'eof'
  }

  /** Drives one generation: the first response, then reconnects until `done`. */
  async function run(stream: ActiveStream, start: () => Promise<Response>, rollback: () => void): Promise<void> {
    let response: Response
    try {
      response = await start()
    } catch (error) {
      if (!isActive(stream)) return
      active = null
      rollback()
      const banner =
        error instanceof ApiError && error.code === 'generation_running' ? 'generation_running' : messageText(error)
      set({ streaming: false, streamingMessageId: null, stopping: false, banner, queuePosition: null })
      return
    }
    let attempt = 0
    for (;;) {
      let outcome: 'done' | 'eof' = 'eof'
      try {
        outcome = await consume(stream, response)
      } catch {
        outcome = 'eof'
      }
      if (!isActive(stream) || stream.controller.signal.aborted) return
      if (outcome === 'done') {
        const conversationId = stream.conversationId
        finishStream(stream)
        if (conversationId) void afterDone(conversationId, stream.isNew)
        return
      }
      // The connection dropped before `done`: reattach with Last-Event-ID.
      flush(stream)
      if (!stream.generationId) {
        finishStream(stream)
        set({ banner: 'connection_lost' })
        if (stream.conversationId) void refresh(stream.conversationId)
        return
      }
      set({ reconnecting: true })
      let resumed: Response | null = null
      while (!resumed) {
        const delay = RECONNECT_DELAYS[attempt]
        attempt += 1
        if (delay === undefined) {
          finishStream(stream)
          set({ banner: 'connection_lost' })
          if (stream.conversationId) void refresh(stream.conversationId)
          return
        }
        await sleep(delay, stream.controller.signal)
        if (!isActive(stream) || stream.controller.signal.aborted) return
        try {
          resumed = await api.resume(stream.generationId, stream.lastEventId, stream.controller.signal)
        } catch (error) {
          if (!isActive(stream)) return
          if (error instanceof ApiError && error.status === 404) {
            // Finished and forgotten: the stored conversation has the answer.
            finishStream(stream)
            if (stream.conversationId) void refresh(stream.conversationId)
            return
          }
        }
      }
      set({ reconnecting: false })
      response = resumed
    }
  }

  async function afterDone(conversationId: string, isNew: boolean): Promise<void> {
    await refresh(conversationId)
    useConversations.getState().patchLocal(conversationId, { updated_at: new Date().toISOString() })
    const conversation = get().conversation
    if (conversation) useConversations.getState().upsert(conversation, { toTop: true })
    if (isNew) {
      // The gateway writes an automatic title shortly after the first answer.
      setTimeout(() => void refresh(conversationId), 2500)
    }
  }

  /** Re-reads the stored conversation (ids, statuses, title) when nothing is streaming. */
  async function refresh(conversationId: string): Promise<void> {
    let detail: ConversationDetail
    try {
      detail = await api.getConversation(conversationId)
    } catch {
      return
    }
    const state = get()
    if (state.conversationId !== conversationId || active) return
    const messages = toMap(detail.messages)
    const leafId =
      state.leafId !== null && messages[state.leafId] ? state.leafId : (newestMessage(messages)?.id ?? null)
    const { messages: _omit, active_generation_id: _running, ...conversation } = detail
    set({ messages, leafId, conversation })
    useConversations.getState().patchLocal(conversationId, { title: detail.title })
  }

  function begin(isNew: boolean, assistantId: number, userTempId: number | null): ActiveStream {
    const stream: ActiveStream = {
      controller: new AbortController(),
      generationId: null,
      conversationId: get().conversationId,
      assistantId,
      userTempId,
      lastEventId: 0,
      stopRequested: false,
      pendingText: '',
      flushTimer: null,
      isNew,
    }
    active = stream
    set({ streaming: true, streamingMessageId: assistantId, reconnecting: false, stopping: false, banner: null, usage: null, queuePosition: null })
    return stream
  }

  function turnOptions(): Partial<ChatRequest> {
    const state = get()
    const body: Partial<ChatRequest> = paramsBody(state.params)
    if (state.model) body.model = state.model
    return body
  }

  function pendingAssistant(id: number, parentId: number | null): Message {
    return {
      id,
      parent_id: parentId,
      role: 'assistant',
      content: '',
      status: 'pending',
      token_in: null,
      token_out: null,
      model: get().model,
      finish_reason: null,
      error: null,
      created_at: new Date().toISOString(),
    }
  }

  function userMessage(id: number, parentId: number | null, content: string): Message {
    return { ...pendingAssistant(id, parentId), role: 'user', content, status: 'complete', model: null }
  }

  /** Adds optimistic messages and returns how to take them back if the request fails. */
  function addOptimistic(messages: Message[], leafId: number): () => void {
    const before = { messages: get().messages, leafId: get().leafId }
    const next = { ...before.messages }
    for (const message of messages) next[message.id] = message
    set({ messages: next, leafId })
    return () => {
      const current = { ...get().messages }
      for (const message of messages) delete current[message.id]
      set({ messages: current, leafId: before.leafId })
    }
  }

  return {
    conversationId: null,
    conversation: null,
    messages: {},
    leafId: null,
    status: 'empty',
    loadError: null,
    streaming: false,
    streamingMessageId: null,
    queuePosition: null,
    reconnecting: false,
    stopping: false,
    banner: null,
    usage: null,
    model: null,
    params: { ...EMPTY_PARAMS },
    systemPrompt: '',

    async open(conversationId) {
      const state = get()
      if (conversationId !== null && conversationId === state.conversationId && state.status !== 'error') return
      get().detach()
      if (conversationId === null) {
        set({
          conversationId: null,
          conversation: null,
          messages: {},
          leafId: null,
          status: 'empty',
          loadError: null,
          banner: null,
          usage: null,
          systemPrompt: '',
          model: null,
        })
        return
      }
      set({ conversationId, conversation: null, messages: {}, leafId: null, status: 'loading', loadError: null, banner: null })
      let detail: ConversationDetail
      try {
        detail = await api.getConversation(conversationId)
      } catch (error) {
        if (get().conversationId !== conversationId) return
        if (error instanceof ApiError && (error.status === 404 || error.status === 422)) set({ status: 'notFound' })
        else set({ status: 'error', loadError: messageText(error) })
        return
      }
      if (get().conversationId !== conversationId) return
      const messages = toMap(detail.messages)
      const { messages: _omit, active_generation_id: generationId, ...conversation } = detail
      let leafId = newestMessage(messages)?.id ?? null
      const running = generationId
        ? Object.values(messages)
            .filter((m) => m.role === 'assistant' && m.status === 'pending')
            .sort((a, b) => b.id - a.id)[0]
        : undefined
      if (running) {
        leafId = running.id
        // The replay from event 1 rebuilds the text, so start from nothing.
        messages[running.id] = { ...running, content: '' }
      }
      set({
        conversation,
        messages,
        leafId,
        status: 'ready',
        systemPrompt: conversation.system_prompt ?? '',
        model: conversation.model ?? get().model,
      })
      if (generationId && running) {
        const stream = begin(false, running.id, null)
        stream.generationId = generationId
        stream.conversationId = conversationId
        void run(stream, () => api.resume(generationId, 0, stream.controller.signal), () => undefined)
      }
    },

    async send(text) {
      const state = get()
      if (active || !text.trim()) return
      const body: ChatRequest = { message: text, ...turnOptions() }
      const newest = newestMessage(state.messages)
      const leaf = state.leafId !== null ? state.messages[state.leafId] : undefined
      if (state.conversationId) {
        body.conversation_id = state.conversationId
        // Continuing an older branch: say where the new message goes.
        if (leaf && newest && leaf.id !== newest.id && leaf.id > 0) body.parent_id = leaf.id
      } else if (state.systemPrompt.trim()) {
        body.system_prompt = state.systemPrompt
      }
      const userId = tempId()
      const assistantId = tempId()
      const parentId = leaf ? leaf.id : null
      const rollback = addOptimistic(
        [userMessage(userId, parentId, text), pendingAssistant(assistantId, userId)],
        assistantId,
      )
      const stream = begin(!state.conversationId, assistantId, userId)
      await run(stream, () => api.chat(body, stream.controller.signal), rollback)
    },

    async regenerate(userMessageId) {
      const state = get()
      if (active || !state.conversationId) return
      const body: ChatRequest = {
        conversation_id: state.conversationId,
        parent_id: userMessageId,
        regenerate: true,
        ...turnOptions(),
      }
      const assistantId = tempId()
      const rollback = addOptimistic([pendingAssistant(assistantId, userMessageId)], assistantId)
      const stream = begin(false, assistantId, null)
      await run(stream, () => api.chat(body, stream.controller.signal), rollback)
    },

    async editAndResend(messageId, text) {
      const state = get()
      const original = state.messages[messageId]
      if (active || !state.conversationId || !original || !text.trim()) return
      const body: ChatRequest = {
        conversation_id: state.conversationId,
        parent_id: original.parent_id,
        message: text,
        ...turnOptions(),
      }
      const userId = tempId()
      const assistantId = tempId()
      const rollback = addOptimistic(
        [userMessage(userId, original.parent_id, text), pendingAssistant(assistantId, userId)],
        assistantId,
      )
      const stream = begin(false, assistantId, userId)
      await run(stream, () => api.chat(body, stream.controller.signal), rollback)
    },

    async stop() {
      const stream = active
      if (!stream) return
      set({ stopping: true })
      stream.stopRequested = true
      if (!stream.generationId) return // sent as soon as the `conversation` event names it
      try {
        await api.stop(stream.generationId)
      } catch (error) {
        // Already finished: the stream's `done` event will settle the state.
        if (!(error instanceof ApiError && error.status === 404)) set({ banner: messageText(error) })
      }
    },

    showBranch(messageId) {
      const messages = get().messages
      if (!messages[messageId]) return
      set({ leafId: newestDescendant(messages, messageId) })
    },

    setModel(model) {
      const state = get()
      set({ model, params: { ...EMPTY_PARAMS } })
      if (state.conversationId && model && state.conversation?.model !== model) {
        void api
          .updateConversation(state.conversationId, { model })
          .then((c) => {
            if (get().conversationId === c.id) set({ conversation: { ...(get().conversation ?? c), model: c.model } })
          })
          .catch(() => undefined)
      }
    },

    setParams(params) {
      set({ params: { ...get().params, ...params } })
    },

    resetParams() {
      set({ params: { ...EMPTY_PARAMS } })
    },

    async saveSystemPrompt(text) {
      const state = get()
      set({ systemPrompt: text })
      if (!state.conversationId) return
      const updated = await api.updateConversation(state.conversationId, { system_prompt: text.trim() ? text : null })
      if (get().conversationId === updated.id) set({ conversation: { ...(get().conversation ?? updated), system_prompt: updated.system_prompt } })
    },

    dismissBanner() {
      set({ banner: null })
    },

    detach() {
      const stream = active
      if (!stream) return
      flush(stream)
      active = null
      stream.controller.abort()
      set({ streaming: false, streamingMessageId: null, reconnecting: false, stopping: false, queuePosition: null })
    },
  }
})

/** For tests: forget module state. */
export function resetChatModule(): void {
  active?.controller.abort()
  active = null
  tempCounter = 0
}
