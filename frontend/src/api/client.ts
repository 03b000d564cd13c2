// The typed HTTP client: bearer auth, refresh shortly before expiry and once on a 401,
// and the gateway's one error shape turned into ApiError.

import { tokens } from './tokens'
import type { ApiErrorBody, TokenResponse } from './types'

/** Refresh when the access token has less than this left. */
export const REFRESH_MARGIN_MS = 60_000

export class ApiError extends Error {
  readonly status: number
  readonly code: string | null
  readonly type: string | null
  readonly param: string | null

  constructor(status: number, message: string, code: string | null = null, type: string | null = null, param: string | null = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.type = type
    this.param = param
  }
}

export async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown = null
  try {
    body = await response.json()
  } catch {
    /* not JSON */
  }
  const error = (body as ApiErrorBody | null)?.error
  if (error && typeof error.message === 'string') {
    return new ApiError(response.status, error.message, error.code ?? null, error.type ?? null, error.param ?? null)
  }
  // FastAPI validation errors ({"detail": [...]}) in case a route answers with them.
  const detail = (body as { detail?: unknown } | null)?.detail
  if (Array.isArray(detail) && detail.length > 0) {
    const first = detail[0] as { msg?: string }
    return new ApiError(response.status, first.msg ?? response.statusText, 'invalid_request')
  }
  return new ApiError(response.status, response.statusText || `HTTP ${response.status}`)
}

let refreshing: Promise<boolean> | null = null

/** Exchange the refresh token for new tokens; concurrent callers share one request. */
export function refreshSession(): Promise<boolean> {
  if (refreshing) return refreshing
  const stored = tokens.get()
  if (!stored) return Promise.resolve(false)
  refreshing = (async () => {
    try {
      const response = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh_token: stored.refreshToken }),
      })
      if (!response.ok) {
        // Another tab may have rotated the refresh token meanwhile: keep its tokens.
        const now = tokens.get()
        if (now && now.refreshToken !== stored.refreshToken) return true
        if (response.status === 400 || response.status === 401 || response.status === 403) tokens.clear()
        return false
      }
      tokens.setFromResponse((await response.json()) as TokenResponse)
      return true
    } catch {
      return false
    } finally {
      refreshing = null
    }
  })()
  return refreshing
}

function withAuth(init: RequestInit | undefined, access: string | undefined): RequestInit {
  const headers = new Headers(init?.headers)
  if (access) headers.set('Authorization', `Bearer ${access}`)
  return { ...init, headers }
}

/** fetch() with the bearer token; refreshes first if it is about to expire, and retries once on 401. */
export async function authFetch(path: string, init?: RequestInit): Promise<Response> {
  let stored = tokens.get()
  if (stored && stored.accessExpiresAt - Date.now() < REFRESH_MARGIN_MS) {
    await refreshSession()
    stored = tokens.get()
  }
  const response = await fetch(path, withAuth(init, stored?.accessToken))
  if (response.status !== 401 || !stored) return response
  const used = stored.accessToken
  // Another request may already have refreshed; otherwise refresh now.
  const fresh = tokens.get()
  const ok = fresh && fresh.accessToken !== used ? true : await refreshSession()
  const next = tokens.get()
  if (!ok || !next) {
    tokens.clear()
    return response
  }
  const retried = await fetch(path, withAuth(init, next.accessToken))
  if (retried.status === 401) tokens.clear()
  return retried
}

type Query = Record<string, string | number | boolean | null | undefined>

export function withQuery(path: string, query?: Query): string {
  if (!query) return path
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value))
  }
  const text = params.toString()
  return text ? `${path}?${text}` : path
}

export async function request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
  const init: RequestInit = { method, headers: { Accept: 'application/json' } }
  if (body !== undefined) {
    init.headers = { ...init.headers, 'Content-Type': 'application/json' }
    init.body = JSON.stringify(body)
  }
  const response = await authFetch(withQuery(path, query), init)
  if (!response.ok) throw await errorFrom(response)
  if (response.status === 204) return undefined as T
  const type = response.headers.get('content-type') ?? ''
  if (!type.includes('json')) return (await response.text()) as T
  return (await response.json()) as T
}
