// The signed-in user's ratings of the answers in the open conversation: loaded once per
// conversation, updated with what the gateway answers to the thumbs and the correction dialog.

import { create } from 'zustand'
import { api } from '../api'
import type { Feedback, Rating } from '../api/types'

export interface FeedbackState {
  conversationId: string | null
  byMessage: Record<number, Feedback>
  /** Load the ratings of `conversationId` unless they are loaded (or loading) already. */
  ensure(conversationId: string): Promise<void>
  rate(conversationId: string, messageId: number, rating: Rating, correction?: string | null): Promise<void>
  withdraw(conversationId: string, messageId: number): Promise<void>
}

export const useFeedback = create<FeedbackState>((set, get) => ({
  conversationId: null,
  byMessage: {},

  async ensure(conversationId) {
    if (get().conversationId === conversationId) return
    set({ conversationId, byMessage: {} })
    try {
      const rows = await api.conversationFeedback(conversationId)
      if (get().conversationId !== conversationId) return
      set({ byMessage: Object.fromEntries(rows.map((row) => [row.message_id, row])) })
    } catch {
      // No ratings shown is better than a broken chat; rating again still works.
    }
  },

  async rate(conversationId, messageId, rating, correction = null) {
    const saved = await api.rateMessage(conversationId, messageId, rating, correction)
    if (get().conversationId === conversationId) set({ byMessage: { ...get().byMessage, [messageId]: saved } })
  },

  async withdraw(conversationId, messageId) {
    await api.unrateMessage(conversationId, messageId)
    if (get().conversationId !== conversationId) return
    const next = { ...get().byMessage }
    delete next[messageId]
    set({ byMessage: next })
  },
}))
