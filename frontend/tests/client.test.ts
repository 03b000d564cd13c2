import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { api, ApiError } from '../src/api'
import { tokens } from '../src/api/tokens'
import { apiError, json, mockFetch, setTokens } from './helpers'

const fresh = { access_token: 'access-2', refresh_token: 'refresh-2', expires_in: 1800, refresh_expires_in: 604800, token_type: 'bearer' }

beforeEach(() => {
  setTokens()
  tokens.reload()
})
afterEach(() => vi.unstubAllGlobals())

describe('API client', () => {
  it('sends the bearer token', async () => {
    const { calls } = mockFetch({ 'GET /api/models': () => json({ models: [], default: null }) })
    await api.models()
    expect(calls[0]?.headers.get('authorization')).toBe('Bearer access-1')
  })

  it('refreshes once on 401 and retries with the new token', async () => {
    const { calls } = mockFetch({
      'GET /api/models': [() => apiError(401, 'invalid_token'), () => json({ models: [], default: 'm' })],
      'POST /api/auth/refresh': () => json(fresh),
    })
    const list = await api.models()
    expect(list.default).toBe('m')
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual(['GET /api/models', 'POST /api/auth/refresh', 'GET /api/models'])
    expect(calls[1]?.body).toEqual({ refresh_token: 'refresh-1' })
    expect(calls[2]?.headers.get('authorization')).toBe('Bearer access-2')
    expect(tokens.get()?.accessToken).toBe('access-2')
  })

  it('refreshes before a request when the token is about to expire', async () => {
    setTokens(20)
    tokens.reload()
    const { calls } = mockFetch({
      'POST /api/auth/refresh': () => json(fresh),
      'GET /api/auth/verify': () => json({ username: 'a', role: 'user', exp: 1, user_id: 1 }),
    })
    await api.verify()
    expect(calls.map((c) => c.url)).toEqual(['/api/auth/refresh', '/api/auth/verify'])
    expect(calls[1]?.headers.get('authorization')).toBe('Bearer access-2')
  })

  it('shares one refresh between concurrent requests', async () => {
    const { calls } = mockFetch({
      'GET /api/models': [() => apiError(401, 'x'), () => apiError(401, 'x'), () => json({ models: [], default: null })],
      'POST /api/auth/refresh': () => json(fresh),
    })
    await Promise.all([api.models(), api.models()])
    expect(calls.filter((c) => c.url === '/api/auth/refresh')).toHaveLength(1)
  })

  it('signs out when the refresh is refused', async () => {
    mockFetch({
      'GET /api/models': () => apiError(401, 'invalid_token'),
      'POST /api/auth/refresh': () => apiError(401, 'invalid_token'),
    })
    await expect(api.models()).rejects.toBeInstanceOf(ApiError)
    expect(tokens.get()).toBeNull()
  })

  it('turns the gateway error shape into ApiError', async () => {
    mockFetch({ 'POST /api/chat': () => apiError(409, 'generation_running', 'busy') })
    const error = await api.chat({ message: 'x', conversation_id: 'c' }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect((error as ApiError).status).toBe(409)
    expect((error as ApiError).code).toBe('generation_running')
    expect((error as ApiError).message).toBe('busy')
  })

  it('logs in and stores both tokens', async () => {
    tokens.clear()
    const { calls } = mockFetch({ 'POST /api/auth/login': () => json(fresh) })
    await api.login('admin', 'pw')
    expect(calls[0]?.body).toEqual({ username: 'admin', password: 'pw' })
    expect(tokens.get()?.refreshToken).toBe('refresh-2')
    expect(JSON.parse(localStorage.getItem('chatgate.tokens') ?? '{}').accessToken).toBe('access-2')
  })

  it('reports a missing usage API as null (not available yet)', async () => {
    mockFetch({})
    expect(await api.usage()).toBeNull()
  })

  it('sends Last-Event-ID when resuming', async () => {
    const { calls } = mockFetch({ 'GET /api/chat/g1/stream': () => new Response('', { headers: { 'content-type': 'text/event-stream' } }) })
    await api.resume('g1', 42)
    expect(calls[0]?.headers.get('last-event-id')).toBe('42')
  })
})
