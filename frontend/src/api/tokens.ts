// Where the session's tokens live: localStorage, shared by every tab (the
// `storage` event keeps tabs in step when one of them refreshes or logs out).

import type { TokenResponse } from './types'

export interface StoredTokens {
  accessToken: string
  refreshToken: string
  /** epoch milliseconds */
  accessExpiresAt: number
  refreshExpiresAt: number
}

const KEY = 'chatgate.tokens'
type Listener = (tokens: StoredTokens | null) => void
const listeners = new Set<Listener>()

function read(): StoredTokens | null {
  try {
    const raw = globalThis.localStorage?.getItem(KEY)
    if (!raw) return null
    const parsed = JSON.parse(raw) as Partial<StoredTokens>
    if (typeof parsed.accessToken !== 'string' || typeof parsed.refreshToken !== 'string') return null
    return {
      accessToken: parsed.accessToken,
      refreshToken: parsed.refreshToken,
      accessExpiresAt: Number(parsed.accessExpiresAt) || 0,
      refreshExpiresAt: Number(parsed.refreshExpiresAt) || 0,
    }
  } catch {
    return null
  }
}

let current: StoredTokens | null = read()

function emit(): void {
  for (const listener of listeners) listener(current)
}

if (typeof window !== 'undefined') {
  window.addEventListener('storage', (event) => {
    if (event.key !== KEY) return
    current = read()
    emit()
  })
}

export const tokens = {
  get(): StoredTokens | null {
    return current
  },
  setFromResponse(response: TokenResponse, now: number = Date.now()): StoredTokens {
    current = {
      accessToken: response.access_token,
      refreshToken: response.refresh_token,
      accessExpiresAt: now + response.expires_in * 1000,
      refreshExpiresAt: now + response.refresh_expires_in * 1000,
    }
    try {
      globalThis.localStorage?.setItem(KEY, JSON.stringify(current))
    } catch {
      /* private mode: the session lasts as long as the tab */
    }
    emit()
    return current
  },
  clear(): void {
    current = null
    try {
      globalThis.localStorage?.removeItem(KEY)
    } catch {
      /* ignore */
    }
    emit()
  },
  subscribe(listener: Listener): () => void {
    listeners.add(listener)
    return () => listeners.delete(listener)
  },
  /** For tests: re-read storage. */
  reload(): void {
    current = read()
  },
}
