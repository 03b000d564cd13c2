import { vi } from 'vitest'

export interface Sse {
  response: Response
  push(text: string): void
  event(id: number, event: string | null, data: unknown): void
  close(): void
  fail(): void
}

/** An SSE response whose body the test writes to. */
export function sseResponse(status = 200): Sse {
  const encoder = new TextEncoder()
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
    },
  })
  const sse: Sse = {
    response: new Response(body, { status, headers: { 'content-type': 'text/event-stream' } }),
    push(text) {
      controller.enqueue(encoder.encode(text))
    },
    event(id, event, data) {
      sse.push(`id: ${id}\n${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`)
    },
    close() {
      controller.close()
    },
    fail() {
      controller.error(new TypeError('network error'))
    },
  }
  return sse
}

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
}

export function apiError(status: number, code: string, message = code): Response {
  return json({ error: { type: 'invalid_request_error', message, code, param: null } }, status)
}

export function chunk(content: string) {
  return { object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] }
}

export interface Call {
  url: string
  method: string
  headers: Headers
  body: unknown
}

type Handler = (call: Call) => Response | Promise<Response>

/** Routes fetch() calls to handlers by "METHOD path" (path without query), recording every call. */
export function mockFetch(routes: Record<string, Handler | Handler[]>) {
  const calls: Call[] = []
  const fn = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.pathname + input.search : input.url
    const method = (init?.method ?? 'GET').toUpperCase()
    let body: unknown = undefined
    if (typeof init?.body === 'string') {
      try {
        body = JSON.parse(init.body)
      } catch {
        body = init.body
      }
    }
    const call: Call = { url, method, headers: new Headers(init?.headers), body }
    calls.push(call)
    const path = url.split('?')[0]
    const key = `${method} ${path}`
    const route = routes[key]
    if (!route) return apiError(404, 'not_found', `no mock for ${key}`)
    const handler = Array.isArray(route) ? (route.length > 1 ? route.shift() : route[0]) : route
    if (!handler) throw new Error(`no handler left for ${key}`)
    if (init?.signal?.aborted) throw new DOMException('aborted', 'AbortError')
    return handler(call)
  })
  vi.stubGlobal('fetch', fn)
  return { fn, calls }
}

export function setTokens(expiresInSeconds = 1800): void {
  localStorage.setItem(
    'chatgate.tokens',
    JSON.stringify({
      accessToken: 'access-1',
      refreshToken: 'refresh-1',
      accessExpiresAt: Date.now() + expiresInSeconds * 1000,
      refreshExpiresAt: Date.now() + 7 * 86400 * 1000,
    }),
  )
}

export const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms))

export async function waitFor(check: () => boolean, timeout = 2000): Promise<void> {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > timeout) throw new Error('waitFor timed out')
    await tick(5)
  }
}
