import { describe, expect, it } from 'vitest'
import type { Message } from '../src/api/types'
import { newestDescendant, newestMessage, pathTo, siblingsOf, type MessageMap } from '../src/lib/tree'

function msg(id: number, parent: number | null, role: 'user' | 'assistant'): Message {
  return { id, parent_id: parent, role, content: `m${id}`, status: 'complete', token_in: null, token_out: null, model: null, finish_reason: null, error: null, created_at: '' }
}

// 1 user → 2 assistant → 3 user → 4 assistant
//                      ↘ 5 user (edit of 3) → 6 assistant → 7 assistant (regenerated)
const messages: MessageMap = Object.fromEntries(
  [msg(1, null, 'user'), msg(2, 1, 'assistant'), msg(3, 2, 'user'), msg(4, 3, 'assistant'), msg(5, 2, 'user'), msg(6, 5, 'assistant'), msg(7, 5, 'assistant')].map((m) => [m.id, m]),
)

describe('message tree', () => {
  it('shows the path ending at the newest message', () => {
    expect(newestMessage(messages)?.id).toBe(7)
    expect(pathTo(messages, 7).map((m) => m.id)).toEqual([1, 2, 5, 7])
  })

  it('counts siblings for branch switching', () => {
    expect(siblingsOf(messages, messages[5] as Message)).toEqual({ index: 1, count: 2, previous: 3, next: null })
    expect(siblingsOf(messages, messages[6] as Message)).toEqual({ index: 0, count: 2, previous: null, next: 7 })
    expect(siblingsOf(messages, messages[1] as Message).count).toBe(1)
  })

  it('switching to a branch shows its newest message', () => {
    expect(newestDescendant(messages, 3)).toBe(4)
    expect(newestDescendant(messages, 5)).toBe(7)
    expect(pathTo(messages, newestDescendant(messages, 3)).map((m) => m.id)).toEqual([1, 2, 3, 4])
  })

  it('puts optimistic (negative id) messages after saved ones and survives cycles', () => {
    const withTemp: MessageMap = { ...messages, [-1]: msg(-1, 7, 'user') }
    expect(newestMessage(withTemp)?.id).toBe(-1)
    const cyclic: MessageMap = { 1: msg(1, 2, 'user'), 2: msg(2, 1, 'assistant') }
    expect(pathTo(cyclic, 2)).toHaveLength(2)
  })
})

describe('siblingsIndex', () => {
  it('agrees with siblingsOf for every message', async () => {
    const { siblingsIndex } = await import('../src/lib/tree')
    const index = siblingsIndex(messages)
    for (const message of Object.values(messages)) expect(index.get(message.id)).toEqual(siblingsOf(messages, message))
  })
})
