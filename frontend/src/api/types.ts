// Shapes of the chatgate HTTP API (see README "HTTP API" and the OpenAPI docs at /docs).

export interface ApiErrorBody {
  error: { type?: string; message: string; code?: string | null; param?: string | null }
}

export interface TokenResponse {
  access_token: string
  token_type?: string
  expires_in: number
  refresh_token: string
  refresh_expires_in: number
}

export interface VerifyResponse {
  username: string
  role: 'user' | 'admin' | string
  exp: number | null
  user_id: number
}

export interface SamplingDefaults {
  temperature?: number
  top_p?: number
  max_tokens?: number
  [key: string]: unknown
}

export interface ModelInfo {
  id: string
  name: string
  aliases: string[]
  default_params: SamplingDefaults
  context_length: number | null
  healthy: boolean
}

export interface ModelList {
  models: ModelInfo[]
  default: string | null
}

export interface Conversation {
  id: string
  title: string
  model: string | null
  system_prompt: string | null
  archived: boolean
  created_at: string
  updated_at: string
}

export type MessageStatus = 'pending' | 'complete' | 'interrupted' | 'error' | string

export interface Message {
  id: number
  parent_id: number | null
  role: 'user' | 'assistant' | 'system' | string
  content: string
  status: MessageStatus
  token_in: number | null
  token_out: number | null
  model: string | null
  finish_reason: string | null
  error: string | null
  created_at: string
}

export interface ConversationDetail extends Conversation {
  messages: Message[]
  active_generation_id: string | null
}

export interface ConversationPage {
  conversations: Conversation[]
  next_cursor: string | null
}

export interface UserSettings {
  default_model?: string | null
  system_prompt?: string | null
  temperature?: number | null
  top_p?: number | null
  max_tokens?: number | null
  language?: string | null
}

export interface User {
  id: number
  username: string
  email: string | null
  role: string
  disabled: boolean
  settings: UserSettings
  created_at: string
}

export interface ApiKey {
  id: number
  name: string
  prefix: string
  scopes: string[]
  limits: Record<string, unknown>
  created_at: string
  expires_at: string | null
  last_used_at: string | null
  revoked_at: string | null
}

export interface ApiKeyCreated extends ApiKey {
  key: string
}

export interface ChatRequest {
  conversation_id?: string
  message?: string
  model?: string
  system_prompt?: string
  temperature?: number
  top_p?: number
  max_tokens?: number
  parent_id?: number | null
  regenerate?: boolean
}

/** `event: conversation` — the first event of every chat stream. */
export interface ConversationEvent {
  conversation_id: string
  generation_id: string
  user_message_id: number | null
  assistant_message_id: number
  title: string
  model: string
}

export interface ChunkEvent {
  choices?: { delta?: { content?: string | null; role?: string }; finish_reason?: string | null }[]
}

export interface DoneEvent {
  status: 'complete' | 'interrupted' | 'error' | string
  finish_reason: string | null
  message_id: number
  conversation_id: string
}

export interface UsageEvent {
  prompt_tokens?: number
  completion_tokens?: number
  total_tokens?: number
  [key: string]: unknown
}

export interface UsageRow {
  id: number
  request_id: string
  created_at: string
  user_id: number | null
  username: string | null
  api_key_id: number | null
  api_key_name: string | null
  route: string
  model: string | null
  engine: string | null
  status: string
  status_code: number
  finish_reason: string | null
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  ttft_ms: number | null
  latency_ms: number
  error: string | null
}

export interface UsagePage {
  rows: UsageRow[]
  next_cursor: string | null
}

export type UsageGroupBy = 'day' | 'model' | 'user' | 'key'

export interface UsageGroup {
  key: string | number | null
  label: string | null
  requests: number
  ok: number
  error: number
  other: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  avg_latency_ms: number | null
  max_latency_ms: number | null
  avg_ttft_ms: number | null
}

export interface UsageSummary {
  group_by: UsageGroupBy
  since: string | null
  until: string | null
  groups: UsageGroup[]
  totals: UsageGroup
}

export interface UsageQuery {
  since?: string
  until?: string
  model?: string
  username?: string
  status?: string
}

// ---- Admin: hardware, model profiles, engines, switching ----

export interface GpuDevice {
  index: number
  name: string
  memory_used_mib: number
  memory_total_mib: number
  memory_used_bytes: number
  memory_total_bytes: number
  utilization_percent: number | null
  temperature_c: number | null
  power_w: number | null
  power_limit_w: number | null
}

export interface HardwareStatus {
  available: boolean
  message: string
  devices: GpuDevice[]
}

export type EngineKind = 'vllm' | 'llamacpp' | 'openai'
export type ModelState = 'ready' | 'starting' | 'stopped' | 'failed' | 'attached' | 'not_running'
export type Verdict = 'fits' | 'fits_with_tp' | 'does_not_fit' | 'no_gpu' | 'cpu'

export interface CompatReport {
  profile_id: string
  gpus: number
  gpu_memory_bytes: number | null
  gpu_memory_utilization: number
  max_model_len: number
  weights_bytes: number
  kv_cache_bytes: number
  overhead_bytes: number
  required_bytes: number
  usable_bytes_per_gpu: number | null
  verdict: Verdict
  tensor_parallel_size: number | null
  message: string
  suggested_args: string[]
  alternatives: string[]
}

export interface EngineMetrics {
  requests_running: number | null
  requests_waiting: number | null
  /** 0..1 */
  kv_cache_usage: number | null
}

export interface EngineInfo {
  name: string
  model_id: string
  base_url: string
  kind: 'managed' | 'attached'
  state: 'ready' | 'starting' | 'restarting' | 'failed' | 'stopped' | 'attached'
  healthy: boolean
  circuit: 'closed' | 'open' | 'half_open'
  outstanding: number
  /** requests it generates at once (null: not known) */
  capacity?: number | null
  consecutive_failures: number
  last_error: string | null
  /** the supervisor gave up on it (crash loop): its diagnosis */
  failure: string | null
  wedged_restarts: number
  pid: number | null
  metrics: EngineMetrics | null
}

/** A model's engine pool: its slots and the gateway's fair queue in front of them. */
export interface PoolInfo {
  model_id: string
  capacity: number
  busy: number
  waiting: number
  waiting_by_priority: Record<string, number>
  in_flight_by_user: Record<string, number>
  oldest_wait_seconds: number
  mean_hold_seconds: number | null
}

export interface EngineList {
  engines: EngineInfo[]
  pools: PoolInfo[]
}

export interface AdminModel {
  id: string
  name: string
  aliases: string[]
  engine: EngineKind | null
  /** HF model id or local path */
  source: string | null
  params_b: number | null
  dtype: string | null
  quantization: string | null
  context_length: number | null
  description: string
  default_params: SamplingDefaults
  has_profile: boolean
  /** served by the gateway now */
  registered: boolean
  enabled: boolean
  active: boolean
  healthy: boolean | null
  state: ModelState
  endpoints: EngineInfo[]
  verdict: CompatReport | null
}

export interface AdminHardwareSummary {
  gpus: number
  gpu_memory_bytes: number | null
  detected: boolean
  names: string[]
}

export interface AdminModelList {
  active_profile: string | null
  default_model: string | null
  can_switch: boolean
  switch_unavailable_reason: string | null
  hardware: AdminHardwareSummary
  models: AdminModel[]
  /** How long a switch waits for in-flight requests, if the gateway says. */
  drain_seconds?: number | null
}

export type SwitchPhase = 'draining' | 'stopping' | 'starting' | 'ready' | 'failed' | 'rolled_back'

export interface SwitchStatus {
  id: string
  target: string
  previous: string | null
  phase: SwitchPhase
  message: string
  started_at: string
  finished_at: string | null
  drain_seconds: number
  log: { at: string; message: string }[]
}

// ---- Feedback on answers, the training opt-in, datasets (issue 15) ----

export type Rating = 'up' | 'down'

export interface Feedback {
  message_id: number
  rating: Rating
  correction: string | null
  model: string | null
  created_at: string
  updated_at: string
}

export interface TrainingConsent {
  /** Effective: do dataset exports include this user's rated conversations. */
  opted_in: boolean
  /** The user's own choice; null: never chose (the default applies). */
  choice: boolean | null
  default: boolean
}

export interface ModelRates {
  model: string | null
  answers: number
  rated: number
  up: number
  down: number
  corrected: number
  up_rate: number | null
  down_rate: number | null
  rated_share: number | null
}

export interface FeedbackSummary {
  since: string | null
  until: string | null
  models: ModelRates[]
  totals: ModelRates
}

export type DatasetRating = 'endorsed' | 'up' | 'down' | 'corrected' | 'any'

export interface DatasetRequest {
  rating?: DatasetRating
  model?: string | null
  since?: string | null
  until?: string | null
  usernames?: string[]
  min_chars?: number
  holdout?: number
}

export type DatasetFile = 'train.jsonl' | 'heldout.jsonl' | 'metadata.json'

export interface Dataset {
  format: string
  version: string
  hash: string
  created_at: string
  filters: Record<string, unknown>
  counts: Record<string, number>
  scrubbed: Record<string, number>
  models: Record<string, number>
  files: Record<string, string>
}

export type FinetuneStatus = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'interrupted'

/** POST /api/admin/finetune/jobs: `dataset` is an export's version or a JSONL path on the server. */
export interface FinetuneRequest {
  dataset: string
  base?: string
  epochs?: number
  lr?: number
  rank?: number
  max_steps?: number | null
  batch_size?: number
  name?: string | null
}

export interface FinetuneJob {
  id: string
  status: FinetuneStatus
  base: string
  dataset: string
  params: Record<string, unknown>
  owner: string | null
  step: number
  total_steps: number | null
  epoch: number | null
  loss: number | null
  learning_rate: number | null
  tokens_per_second: number | null
  cancel_requested: boolean
  dataset_sha256: string | null
  mlflow_run_id: string | null
  model_name: string | null
  model_version: string | null
  gguf_lora: string | null
  error: string | null
  created_at: string
  heartbeat_at: string | null
  finished_at: string | null
}

export interface CurvePoint {
  step: number
  loss: number
}

export interface FinetuneJobDetail extends FinetuneJob {
  curve: CurvePoint[]
  log_file: string
}

/** The evaluation gate's verdict: scores[split][base|candidate][metric]. */
export interface GateVerdict {
  model: string
  version: string
  gate: 'passed' | 'failed'
  reasons: string[]
  scores: Record<string, Record<string, Record<string, number>>>
  leaks: Record<string, unknown>[]
  tolerance: Record<string, number>
  run_id: string
  evaluation_run_id: string
}

export interface Promotion {
  model: string
  version: string
  gate: string
  promoted: boolean
  forced: boolean
  previous_champion: string | null
}

export interface Deployment {
  model_id: string
  base: string
  name: string
  version: number
  gguf: string | null
  adapter_dir?: string | null
  /** Whether the gateway that answered serves it now (a fleet converges on the list). */
  served?: boolean
  /** Why its last deploy failed. */
  error?: string | null
  deployed_at?: string | null
}

/** POST /api/admin/models/rollback: what answers NAME now (version null: its base alone). */
export interface Rollback {
  model_id: string
  base: string
  name: string
  version: number | null
  undeployed?: string[]
}

export interface ModelSplit {
  base: string
  to: string
  percent: number
  rates: ModelRates[]
  /** The challenger's latest gate verdict (absent: never evaluated, or not read). */
  evaluation?: VersionEvaluation | null
}

/** One side of an evaluation (the base model, or the candidate: base + LoRA); null: that
 * split was not scored. keyword and exact: 0..1, higher is better; perplexity: lower is better. */
export interface EvalScores {
  heldout_exact: number | null
  heldout_keyword: number | null
  heldout_perplexity: number | null
  regression_exact: number | null
  regression_keyword: number | null
  regression_perplexity: number | null
}

/** The evaluation gate's latest verdict on a registered version. */
export interface VersionEvaluation {
  /** BASE:NAME@VERSION (REGISTERED@VERSION without a known base). */
  model: string
  gate: 'passed' | 'failed'
  passed: boolean
  reasons: string[]
  base: EvalScores
  candidate: EvalScores
  leaks: number | null
  evaluated_at: string | null
  evaluation_run_id: string | null
  tolerance: Record<string, number>
}

/** GET /api/admin/models/versions: a registered version. */
export interface RegisteredVersion {
  version: number
  /** REGISTERED@VERSION: what evaluate and promote take. */
  ref: string
  /** BASE:NAME@VERSION: what deploy and splits take (null: the base is unknown). */
  model_id: string | null
  aliases: string[]
  run_id: string | null
  created_at: string | null
  dataset_sha256: string | null
  dataset: string | null
  deployable: boolean
  promoted_at: string | null
  forced_by: string | null
  evaluation: VersionEvaluation | null
}

export interface RegisteredModel {
  /** The MLflow registered model, <base>-<name>. */
  name: string
  base: string | null
  fine_tune: string | null
  /** BASE:NAME (null: the base is unknown). */
  model: string | null
  description: string | null
  /** Newest first. */
  versions: RegisteredVersion[]
}
