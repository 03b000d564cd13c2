// One function per gateway endpoint the UI uses.

import { ApiError, authFetch, errorFrom, request, withQuery } from './client'
import { tokens } from './tokens'
import type {
  AdminModel,
  AdminModelList,
  ApiKey,
  CompatReport,
  EngineList,
  HardwareStatus,
  SwitchStatus,
  ApiKeyCreated,
  ChatRequest,
  Conversation,
  ConversationDetail,
  ConversationPage,
  ModelList,
  TokenResponse,
  UsageGroupBy,
  UsagePage,
  UsageQuery,
  UsageSummary,
  User,
  UserSettings,
  VerifyResponse,
  Dataset,
  DatasetFile,
  DatasetRequest,
  Feedback,
  FeedbackSummary,
  Rating,
  TrainingConsent,
  Deployment,
  FinetuneJob,
  FinetuneJobDetail,
  FinetuneRequest,
  GateVerdict,
  ModelSplit,
  Promotion,
  RegisteredModel,
  Rollback,
} from './types'

export { ApiError } from './client'

function versionPath(name: string, version: string, action: 'evaluate' | 'promote'): string {
  return `/api/admin/finetune/versions/${encodeURIComponent(name)}/${encodeURIComponent(version)}/${action}`
}

function feedbackPath(conversationId: string, messageId: number): string {
  return `/api/conversations/${encodeURIComponent(conversationId)}/messages/${messageId}/feedback`
}
export type * from './types'

export const api = {
  async login(username: string, password: string): Promise<TokenResponse> {
    const response = await fetch('/api/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ username, password }),
    })
    if (!response.ok) throw await errorFrom(response)
    const body = (await response.json()) as TokenResponse
    tokens.setFromResponse(body)
    return body
  },
  async logout(): Promise<void> {
    try {
      if (tokens.get()) await request<void>('POST', '/api/auth/logout')
    } catch {
      /* the session is dropped locally either way */
    } finally {
      tokens.clear()
    }
  },
  verify: () => request<VerifyResponse>('GET', '/api/auth/verify'),

  models: () => request<ModelList>('GET', '/api/models'),

  listConversations: (params: { limit?: number; before?: string | null; q?: string }) =>
    request<ConversationPage>('GET', '/api/conversations', undefined, params),
  getConversation: (id: string) => request<ConversationDetail>('GET', `/api/conversations/${encodeURIComponent(id)}`),
  updateConversation: (id: string, patch: Partial<Pick<Conversation, 'title' | 'system_prompt' | 'model'>>) =>
    request<Conversation>('PATCH', `/api/conversations/${encodeURIComponent(id)}`, patch),
  deleteConversation: (id: string) => request<void>('DELETE', `/api/conversations/${encodeURIComponent(id)}`),
  async exportConversation(id: string, format: 'json' | 'markdown'): Promise<Blob> {
    const path = withQuery(`/api/conversations/${encodeURIComponent(id)}/export`, { format })
    const response = await authFetch(path)
    if (!response.ok) throw await errorFrom(response)
    return response.blob()
  },

  /** Starts a generation; the caller reads the SSE body. */
  async chat(body: ChatRequest, signal?: AbortSignal): Promise<Response> {
    const response = await authFetch('/api/chat', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal: signal ?? null,
    })
    if (!response.ok || !response.body) throw await errorFrom(response)
    return response
  },
  /** Reattaches to a running generation: the events after `lastEventId`. */
  async resume(generationId: string, lastEventId: number, signal?: AbortSignal): Promise<Response> {
    const response = await authFetch(`/api/chat/${encodeURIComponent(generationId)}/stream`, {
      headers: { Accept: 'text/event-stream', 'Last-Event-ID': String(lastEventId) },
      signal: signal ?? null,
    })
    if (!response.ok || !response.body) throw await errorFrom(response)
    return response
  },
  stop: (generationId: string) =>
    request<{ generation_id: string; stopped: boolean }>('POST', `/api/chat/${encodeURIComponent(generationId)}/stop`),

  me: () => request<User>('GET', '/api/users/me'),
  updateSettings: (settings: UserSettings) => request<User>('PATCH', '/api/users/me/settings', settings),
  changePassword: (current_password: string, new_password: string) =>
    request<void>('POST', '/api/users/me/password', { current_password, new_password }),

  listKeys: async () => (await request<{ keys: ApiKey[] }>('GET', '/api/keys')).keys,
  createKey: (name: string) => request<ApiKeyCreated>('POST', '/api/keys', { name }),
  revokeKey: (id: number) => request<ApiKey>('DELETE', `/api/keys/${id}`),

  listUsers: async () => (await request<{ users: User[] }>('GET', '/api/admin/users')).users,
  createUser: (body: { username: string; password: string; email?: string | null; role: string }) =>
    request<User>('POST', '/api/admin/users', body),
  updateUser: (id: number, patch: { role?: string; disabled?: boolean; password?: string; email?: string | null }) =>
    request<User>('PATCH', `/api/admin/users/${id}`, patch),

  /** Usage rows, newest first (own; admins: everyone). null: this gateway has no usage API (404). */
  async usage(query: UsageQuery & { limit?: number; before?: string | null } = {}): Promise<UsagePage | null> {
    try {
      return await request<UsagePage>('GET', '/api/usage', undefined, { ...query })
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null
      throw error
    }
  },
  async usageSummary(groupBy: UsageGroupBy, query: UsageQuery = {}): Promise<UsageSummary | null> {
    try {
      return await request<UsageSummary>('GET', '/api/usage/summary', undefined, { ...query, group_by: groupBy })
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null
      throw error
    }
  },
  hardware: () => request<HardwareStatus>('GET', '/api/admin/hardware'),
  adminModels: () => request<AdminModelList>('GET', '/api/admin/models'),
  /** The compatibility report of a profile; without options, for the detected hardware. */
  checkModel: (id: string, options: { gpus?: number | null; gpuMemory?: string | null } = {}) =>
    request<CompatReport>('GET', `/api/admin/models/${encodeURIComponent(id)}/check`, undefined, {
      gpus: options.gpus,
      gpu_memory: options.gpuMemory?.trim(),
    }),
  switchModel: (id: string) => request<SwitchStatus>('POST', `/api/admin/models/${encodeURIComponent(id)}/switch`),
  /** The running or last model switch (null: none since the gateway started). */
  switchStatus: async () => (await request<{ switch: SwitchStatus | null }>('GET', '/api/admin/models/switch')).switch,
  setModelEnabled: (id: string, enabled: boolean) =>
    request<AdminModel>('POST', `/api/admin/models/${encodeURIComponent(id)}/${enabled ? 'enable' : 'disable'}`),
  engines: async (): Promise<EngineList> => {
    const list = await request<Partial<EngineList>>('GET', '/api/admin/engines')
    return { engines: list.engines ?? [], pools: list.pools ?? [] }
  },

  /** Your ratings of the answers in a conversation. */
  conversationFeedback: async (conversationId: string) =>
    (await request<{ feedback: Feedback[] }>('GET', `/api/conversations/${encodeURIComponent(conversationId)}/feedback`)).feedback,
  rateMessage: (conversationId: string, messageId: number, rating: Rating, correction: string | null = null) =>
    request<Feedback>('PUT', feedbackPath(conversationId, messageId), { rating, correction }),
  unrateMessage: (conversationId: string, messageId: number) => request<void>('DELETE', feedbackPath(conversationId, messageId)),
  trainingConsent: () => request<TrainingConsent>('GET', '/api/users/me/training'),
  setTrainingConsent: (optedIn: boolean | null) => request<TrainingConsent>('PUT', '/api/users/me/training', { opted_in: optedIn }),
  /** Admins: answers and ratings per model id. */
  feedbackSummary: (query: Pick<UsageQuery, 'since' | 'until' | 'model'> = {}) =>
    request<FeedbackSummary>('GET', '/api/admin/feedback/summary', undefined, { ...query }),
  datasets: async () => (await request<{ datasets: Dataset[] }>('GET', '/api/admin/datasets')).datasets,
  createDataset: (body: DatasetRequest) => request<Dataset>('POST', '/api/admin/datasets', body),
  async datasetFile(version: string, name: DatasetFile): Promise<Blob> {
    const response = await authFetch(`/api/admin/datasets/${encodeURIComponent(version)}/files/${name}`)
    if (!response.ok) throw await errorFrom(response)
    return response.blob()
  },

  finetuneJobs: async () => (await request<{ jobs: FinetuneJob[] }>('GET', '/api/admin/finetune/jobs')).jobs,
  finetuneJob: (id: string) => request<FinetuneJobDetail>('GET', `/api/admin/finetune/jobs/${encodeURIComponent(id)}`),
  startFinetune: (body: FinetuneRequest) => request<FinetuneJobDetail>('POST', '/api/admin/finetune/jobs', body),
  cancelFinetune: (id: string) => request<FinetuneJobDetail>('POST', `/api/admin/finetune/jobs/${encodeURIComponent(id)}/cancel`),
  /** Runs the evaluation gate of a registered version (minutes on a CPU). */
  evaluateVersion: (name: string, version: string) => request<GateVerdict>('POST', versionPath(name, version, 'evaluate'), {}),
  promoteVersion: (name: string, version: string, force = false) =>
    request<Promotion>('POST', versionPath(name, version, 'promote'), { force }),
  /** Serves NAME@VERSION (or BASE:NAME@VERSION) as a model; returns once it answers. */
  deployModel: (model: string) => request<Deployment>('POST', '/api/admin/models/deploy', { model }),
  rollbackModel: (name: string) => request<Deployment>('POST', '/api/admin/models/rollback', { name }),
  /** BASE:NAME back to its base model: its versions are no longer served. */
  rollbackToBase: (name: string) => request<Rollback>('POST', '/api/admin/models/rollback', { name, to_base: true }),
  deployments: async () => (await request<{ deployments: Deployment[] }>('GET', '/api/admin/models/deployments')).deployments,
  undeployModel: async (modelId: string) =>
    (await request<{ deployments: Deployment[] }>('DELETE', `/api/admin/models/deployments/${encodeURIComponent(modelId)}`)).deployments,
  /** The registered fine-tunes (or BASE:NAME alone) with their versions and gate verdicts. */
  registeredVersions: async (name?: string) =>
    (await request<{ models: RegisteredModel[] }>('GET', '/api/admin/models/versions', undefined, { name })).models,
  splits: async () => (await request<{ splits: ModelSplit[] }>('GET', '/api/admin/models/splits')).splits,
  setSplit: async (base: string, to: string, percent: number) =>
    (await request<{ splits: ModelSplit[] }>('POST', '/api/admin/models/splits', { base, to, percent })).splits,

  async usageCsv(query: UsageQuery = {}): Promise<Blob> {
    const response = await authFetch(withQuery('/api/usage.csv', { ...query }))
    if (!response.ok) throw await errorFrom(response)
    return response.blob()
  },
}
