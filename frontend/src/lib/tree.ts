// Conversations are trees (regenerate and edit-and-resend add branches); the UI
// shows one path from a first message down to a leaf.

import type { Message } from '../api/types'

export type MessageMap = Record<number, Message>

export function childrenOf(messages: MessageMap, parentId: number | null): Message[] {
  return Object.values(messages)
    .filter((m) => m.parent_id === parentId)
    .sort((a, b) => order(a) - order(b))
}

/** Optimistic (not yet saved) messages have negative ids and sort after saved ones. */
function order(message: Message): number {
  return message.id < 0 ? 1e15 - message.id : message.id
}

/** The newest message: the path that ends there is shown by default. */
export function newestMessage(messages: MessageMap): Message | undefined {
  let best: Message | undefined
  for (const message of Object.values(messages)) {
    if (message.role === 'system') continue
    if (!best || order(message) > order(best)) best = message
  }
  return best
}

/** root → leaf along parent links (cycles and missing parents end the walk). */
export function pathTo(messages: MessageMap, leafId: number | null): Message[] {
  const path: Message[] = []
  const seen = new Set<number>()
  let current = leafId === null ? undefined : messages[leafId]
  while (current && !seen.has(current.id)) {
    seen.add(current.id)
    path.push(current)
    current = current.parent_id === null ? undefined : messages[current.parent_id]
  }
  return path.reverse().filter((m) => m.role !== 'system')
}

/** The newest message at or below `id`: switching to a branch shows its latest state. */
export function newestDescendant(messages: MessageMap, id: number): number {
  let best = messages[id]
  if (!best) return id
  const stack = [id]
  const seen = new Set<number>()
  while (stack.length > 0) {
    const current = stack.pop() as number
    if (seen.has(current)) continue
    seen.add(current)
    for (const child of childrenOf(messages, current)) {
      if (order(child) > order(best)) best = child
      stack.push(child.id)
    }
  }
  return best.id
}

export interface Siblings {
  index: number
  count: number
  previous: number | null
  next: number | null
}

export function siblingsOf(messages: MessageMap, message: Message): Siblings {
  const list = childrenOf(messages, message.parent_id).filter((m) => m.role === message.role)
  const index = list.findIndex((m) => m.id === message.id)
  return {
    index,
    count: list.length,
    previous: index > 0 ? (list[index - 1]?.id ?? null) : null,
    next: index >= 0 && index < list.length - 1 ? (list[index + 1]?.id ?? null) : null,
  }
}

/** Siblings of every message in one pass (the view needs them for each message on screen). */
export function siblingsIndex(messages: MessageMap): Map<number, Siblings> {
  const groups = new Map<string, Message[]>()
  for (const message of Object.values(messages)) {
    const key = `${message.parent_id ?? 'root'}:${message.role}`
    const list = groups.get(key)
    if (list) list.push(message)
    else groups.set(key, [message])
  }
  const index = new Map<number, Siblings>()
  for (const list of groups.values()) {
    list.sort((a, b) => order(a) - order(b))
    list.forEach((message, i) => {
      index.set(message.id, {
        index: i,
        count: list.length,
        previous: i > 0 ? (list[i - 1]?.id ?? null) : null,
        next: i < list.length - 1 ? (list[i + 1]?.id ?? null) : null,
      })
    })
  }
  return index
}
