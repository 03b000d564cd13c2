import { create } from 'zustand'
import { api, type Conversation } from '../api'

export const PAGE_SIZE = 30

interface ConversationsState {
  items: Conversation[]
  nextCursor: string | null
  query: string
  loading: boolean
  loaded: boolean
  error: string | null
  /** Bumped on each new first-page load, so stale pages are dropped. */
  generation: number
  loadFirst(query?: string): Promise<void>
  loadMore(): Promise<void>
  upsert(conversation: Conversation, options?: { toTop?: boolean }): void
  patchLocal(id: string, patch: Partial<Conversation>): void
  rename(id: string, title: string): Promise<void>
  remove(id: string): Promise<void>
}

export const useConversations = create<ConversationsState>((set, get) => ({
  items: [],
  nextCursor: null,
  query: '',
  loading: false,
  loaded: false,
  error: null,
  generation: 0,
  async loadFirst(query = get().query) {
    const generation = get().generation + 1
    set({ generation, query, loading: true, error: null })
    try {
      const page = await api.listConversations({ limit: PAGE_SIZE, q: query.trim() || undefined })
      if (get().generation !== generation) return
      set({ items: page.conversations, nextCursor: page.next_cursor, loading: false, loaded: true })
    } catch (error) {
      if (get().generation !== generation) return
      set({ loading: false, loaded: true, error: error instanceof Error ? error.message : String(error) })
    }
  },
  async loadMore() {
    const { nextCursor, loading, query, generation } = get()
    if (!nextCursor || loading) return
    set({ loading: true })
    try {
      const page = await api.listConversations({ limit: PAGE_SIZE, before: nextCursor, q: query.trim() || undefined })
      if (get().generation !== generation) return
      const seen = new Set(get().items.map((c) => c.id))
      set({
        items: [...get().items, ...page.conversations.filter((c) => !seen.has(c.id))],
        nextCursor: page.next_cursor,
        loading: false,
      })
    } catch (error) {
      if (get().generation !== generation) return
      set({ loading: false, error: error instanceof Error ? error.message : String(error) })
    }
  },
  upsert(conversation, options) {
    const items = get().items
    const index = items.findIndex((c) => c.id === conversation.id)
    if (index === -1) {
      // A search shows only matches; a new conversation appears when the search is cleared.
      if (get().query.trim()) return
      set({ items: [conversation, ...items] })
      return
    }
    const merged = { ...items[index], ...conversation }
    if (options?.toTop) set({ items: [merged, ...items.filter((c) => c.id !== conversation.id)] })
    else set({ items: items.map((c) => (c.id === conversation.id ? merged : c)) })
  },
  patchLocal(id, patch) {
    set({ items: get().items.map((c) => (c.id === id ? { ...c, ...patch } : c)) })
  },
  async rename(id, title) {
    const updated = await api.updateConversation(id, { title })
    get().patchLocal(id, { title: updated.title })
  },
  async remove(id) {
    await api.deleteConversation(id)
    set({ items: get().items.filter((c) => c.id !== id) })
  },
}))
