import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { act, fireEvent, render, renderHook, screen, waitFor, within } from '@testing-library/react'
import { api } from '../src/api'
import type { AdminModel, AdminModelList, CompatReport, EngineInfo, GpuDevice, HardwareStatus, SwitchStatus } from '../src/api/types'
import { AdminModelsPage } from '../src/pages/AdminModelsPage'
import { AdminHardwarePage } from '../src/pages/AdminHardwarePage'
import { useAuth } from '../src/stores/auth'
import { useUi } from '../src/stores/ui'
import { parseRoute } from '../src/stores/router'
import { usePolling } from '../src/lib/polling'
import {
  elapsedSeconds,
  formatDuration,
  formatParams,
  gib,
  isSwitchRunning,
  modelStatus,
  percent,
  shellLine,
  switchSteps,
} from '../src/lib/admin'
import { apiError, json, mockFetch, tick } from './helpers'

const GiB = 1024 ** 3

function report(overrides: Partial<CompatReport> = {}): CompatReport {
  return {
    profile_id: 'deepseek-r1-distill-qwen-14b',
    gpus: 0,
    gpu_memory_bytes: null,
    gpu_memory_utilization: 0.9,
    max_model_len: 8192,
    weights_bytes: 28 * GiB,
    kv_cache_bytes: 1.5 * GiB,
    overhead_bytes: 2 * GiB,
    required_bytes: 31.5 * GiB,
    usable_bytes_per_gpu: null,
    verdict: 'no_gpu',
    tensor_parallel_size: null,
    message: 'no GPU detected: this profile needs a CUDA GPU',
    suggested_args: [],
    alternatives: ['smollm2-135m'],
    ...overrides,
  }
}

function model(overrides: Partial<AdminModel> = {}): AdminModel {
  return {
    id: 'deepseek-r1-distill-qwen-14b',
    name: 'DeepSeek-R1-Distill-Qwen-14B',
    aliases: ['deepseek'],
    engine: 'vllm',
    source: 'deepseek-ai/DeepSeek-R1-Distill-Qwen-14B',
    params_b: 14.8,
    dtype: 'bfloat16',
    quantization: null,
    context_length: 32768,
    description: 'Reasoning model',
    default_params: { temperature: 0.6 },
    has_profile: true,
    registered: false,
    enabled: true,
    active: false,
    healthy: null,
    state: 'not_running',
    endpoints: [],
    verdict: report(),
    ...overrides,
  }
}

const smol = (overrides: Partial<AdminModel> = {}) =>
  model({
    id: 'smollm2-135m',
    name: 'SmolLM2 135M',
    aliases: ['default'],
    engine: 'llamacpp',
    source: 'HuggingFaceTB/SmolLM2-135M-Instruct',
    params_b: 0.135,
    dtype: null,
    quantization: 'Q8_0',
    context_length: 8192,
    registered: true,
    active: true,
    healthy: true,
    state: 'ready',
    verdict: report({ profile_id: 'smollm2-135m', verdict: 'cpu', message: 'runs on the CPU (embedded engine)', alternatives: [] }),
    ...overrides,
  })

function modelList(overrides: Partial<AdminModelList> = {}): AdminModelList {
  return {
    active_profile: 'smollm2-135m',
    default_model: 'smollm2-135m',
    can_switch: true,
    switch_unavailable_reason: null,
    hardware: { gpus: 0, gpu_memory_bytes: null, detected: false, names: [] },
    models: [smol(), model()],
    drain_seconds: 30,
    ...overrides,
  }
}

function engine(overrides: Partial<EngineInfo> = {}): EngineInfo {
  return {
    name: 'embedded-0',
    model_id: 'smollm2-135m',
    base_url: 'http://127.0.0.1:39001',
    kind: 'managed',
    state: 'ready',
    healthy: true,
    circuit: 'closed',
    outstanding: 1,
    consecutive_failures: 0,
    last_error: null,
    failure: null,
    wedged_restarts: 0,
    pid: 1234,
    metrics: { requests_running: 2, requests_waiting: 1, kv_cache_usage: 0.42 },
    ...overrides,
  }
}

function switchStatus(phase: SwitchStatus['phase'], overrides: Partial<SwitchStatus> = {}): SwitchStatus {
  const terminal = phase === 'ready' || phase === 'failed' || phase === 'rolled_back'
  return {
    id: 'sw-1',
    target: 'deepseek-r1-distill-qwen-14b',
    previous: 'smollm2-135m',
    phase,
    message: `phase ${phase}`,
    started_at: new Date(Date.now() - 5000).toISOString(),
    finished_at: terminal ? new Date().toISOString() : null,
    drain_seconds: 30,
    log: [{ at: new Date().toISOString(), message: `entered ${phase}` }],
    ...overrides,
  }
}

function gpu(overrides: Partial<GpuDevice> = {}): GpuDevice {
  return {
    index: 0,
    name: 'NVIDIA GeForce RTX 3090',
    memory_used_mib: 6144,
    memory_total_mib: 24576,
    memory_used_bytes: 6 * GiB,
    memory_total_bytes: 24 * GiB,
    utilization_percent: 57,
    temperature_c: 65,
    power_w: 250.4,
    power_limit_w: 350,
    ...overrides,
  }
}

function signIn(role = 'admin') {
  useAuth.setState({ identity: { username: 'admin', role, exp: null, user_id: 1 }, status: 'authenticated' })
}

function setVisibility(state: 'visible' | 'hidden') {
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state })
  document.dispatchEvent(new Event('visibilitychange'))
}

beforeEach(() => {
  useUi.setState({ language: 'en', toast: null })
  signIn()
})
afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
  setVisibility('visible')
})

describe('admin helpers', () => {
  it('formats sizes, parameters and durations', () => {
    expect(gib(24 * GiB)).toBe('24.0')
    expect(gib(null)).toBe('–')
    expect(formatParams(14)).toBe('14B')
    expect(formatParams(14.8)).toBe('15B')
    expect(formatParams(7.8)).toBe('7.8B')
    expect(formatParams(0.135)).toBe('135M')
    expect(formatParams(null)).toBe('–')
    expect(formatDuration(42)).toBe('42 s')
    expect(formatDuration(185)).toBe('3 min 05 s')
    expect(elapsedSeconds('2025-01-01T00:00:00Z', '2025-01-01T00:00:12Z')).toBe(12)
    expect(elapsedSeconds('2025-01-01T00:00:00Z', null, Date.parse('2025-01-01T00:01:00Z'))).toBe(60)
    expect(percent(6, 24)).toBe(25)
    expect(percent(500, 350)).toBe(100)
    expect(percent(null)).toBeNull()
    expect(percent(3, null)).toBeNull()
  })

  it('derives one status per model', () => {
    expect(modelStatus({ active: true, healthy: true, state: 'ready' })).toBe('active')
    expect(modelStatus({ active: false, healthy: true, state: 'attached' })).toBe('ready')
    expect(modelStatus({ active: true, healthy: null, state: 'starting' })).toBe('starting')
    expect(modelStatus({ active: false, healthy: false, state: 'ready' })).toBe('unhealthy')
    expect(modelStatus({ active: false, healthy: null, state: 'failed' })).toBe('unhealthy')
    expect(modelStatus({ active: false, healthy: null, state: 'not_running' })).toBe('not_running')
    expect(modelStatus({ active: false, healthy: null, state: 'stopped' })).toBe('not_running')
  })

  it('lays out the switch steps for running, finished and failed switches', () => {
    const states = (steps: ReturnType<typeof switchSteps>) => steps.map((s) => s.state)
    expect(states(switchSteps('draining'))).toEqual(['current', 'pending', 'pending', 'pending'])
    expect(states(switchSteps('starting'))).toEqual(['done', 'done', 'current', 'pending'])
    expect(states(switchSteps('ready'))).toEqual(['done', 'done', 'done', 'done'])
    expect(states(switchSteps('failed', 'starting'))).toEqual(['done', 'done', 'failed', 'pending'])
    expect(states(switchSteps('rolled_back', null))).toEqual(['pending', 'pending', 'pending', 'pending'])
    expect(isSwitchRunning(switchStatus('stopping'))).toBe(true)
    expect(isSwitchRunning(switchStatus('rolled_back'))).toBe(false)
    expect(isSwitchRunning(null)).toBe(false)
  })

  it('quotes suggested arguments for a shell line', () => {
    expect(shellLine(['--tensor-parallel-size', '2', '--max-model-len', '8192'])).toBe('--tensor-parallel-size 2 --max-model-len 8192')
    expect(shellLine(['--chat-template', "{{ x }} it's"])).toBe(`--chat-template '{{ x }} it'\\''s'`)
  })

  it('parses the hardware route', () => {
    expect(parseRoute('/admin/hardware')).toEqual({ name: 'adminHardware' })
    expect(parseRoute('/admin/models/')).toEqual({ name: 'adminModels' })
  })
})

describe('admin API functions', () => {
  it('call the documented endpoints', async () => {
    const { calls } = mockFetch({
      'GET /api/admin/models/deepseek-r1-distill-qwen-14b/check': () => json(report({ gpus: 2, verdict: 'fits_with_tp' })),
      'GET /api/admin/models/switch': () => json({ switch: null }),
      'POST /api/admin/models/smollm2-135m/disable': () => json(smol({ enabled: false })),
      'POST /api/admin/models/smollm2-135m/enable': () => json(smol()),
      'POST /api/admin/models/smollm2-135m/switch': () => json(switchStatus('draining'), 202),
      'GET /api/admin/engines': () => json({ engines: [engine()] }),
      'GET /api/admin/hardware': () => json({ available: false, message: 'no GPU', devices: [] }),
    })
    expect((await api.checkModel('deepseek-r1-distill-qwen-14b', { gpus: 2, gpuMemory: ' 24GiB ' })).verdict).toBe('fits_with_tp')
    expect(calls.at(-1)?.url).toBe('/api/admin/models/deepseek-r1-distill-qwen-14b/check?gpus=2&gpu_memory=24GiB')
    await api.checkModel('deepseek-r1-distill-qwen-14b')
    expect(calls.at(-1)?.url).toBe('/api/admin/models/deepseek-r1-distill-qwen-14b/check')
    expect(await api.switchStatus()).toBeNull()
    expect((await api.setModelEnabled('smollm2-135m', false)).enabled).toBe(false)
    expect(calls.at(-1)?.method).toBe('POST')
    await api.setModelEnabled('smollm2-135m', true)
    expect(calls.at(-1)?.url).toBe('/api/admin/models/smollm2-135m/enable')
    expect((await api.switchModel('smollm2-135m')).phase).toBe('draining')
    expect((await api.engines()).engines[0]?.name).toBe('embedded-0')
    expect((await api.hardware()).available).toBe(false)
  })

  it('turns a 409 into an ApiError with its code', async () => {
    mockFetch({ 'POST /api/admin/models/x/switch': () => apiError(409, 'switch_in_progress', 'a switch is running') })
    await expect(api.switchModel('x')).rejects.toMatchObject({ status: 409, code: 'switch_in_progress', message: 'a switch is running' })
  })
})

function modelsRoutes(extra: Record<string, Parameters<typeof mockFetch>[0][string]> = {}) {
  return {
    'GET /api/admin/models': () => json(modelList()),
    'GET /api/admin/models/switch': () => json({ switch: null }),
    'GET /api/admin/engines': () => json({ engines: [engine()] }),
    'GET /api/models': () => json({ models: [], default: null }),
    ...extra,
  }
}

const card = (id: string) => document.querySelector(`[data-model="${id}"]`) as HTMLElement

describe('AdminModelsPage', () => {
  it('lists profiles with status, facts and hardware verdicts', async () => {
    mockFetch(
      modelsRoutes({
        'GET /api/admin/models': () =>
          json(
            modelList({
              hardware: { gpus: 2, gpu_memory_bytes: 24 * GiB, detected: true, names: ['NVIDIA GeForce RTX 3090', 'NVIDIA GeForce RTX 3090'] },
              models: [
                smol(),
                model({
                  verdict: report({
                    gpus: 2,
                    gpu_memory_bytes: 24 * GiB,
                    usable_bytes_per_gpu: 21.6 * GiB,
                    verdict: 'fits_with_tp',
                    tensor_parallel_size: 2,
                    message: 'fits on 2 GPUs with tensor parallelism',
                    suggested_args: ['--tensor-parallel-size', '2', '--max-model-len', '8192'],
                  }),
                }),
                model({ id: 'qwen2.5-14b-awq', name: 'Qwen2.5 14B AWQ', quantization: 'awq', verdict: report({ verdict: 'does_not_fit', message: 'needs 31.5 GiB' }) }),
                model({ id: 'xss-fake', name: 'xss-fake', has_profile: false, registered: true, state: 'attached', healthy: true, verdict: null, engine: 'openai' }),
              ],
            }),
          ),
      }),
    )
    render(<AdminModelsPage />)
    await screen.findByRole('heading', { name: 'DeepSeek-R1-Distill-Qwen-14B' })
    expect(screen.getByTestId('hardware-summary').textContent).toContain('2 GPU(s), 24 GiB each')

    const deepseek = card('deepseek-r1-distill-qwen-14b')
    expect(deepseek.dataset.status).toBe('not_running')
    expect(within(deepseek).getByText('15B')).toBeTruthy()
    expect(within(deepseek).getByText('bfloat16')).toBeTruthy()
    expect(within(deepseek).getByText('32,768')).toBeTruthy()
    const verdict = deepseek.querySelector('[data-verdict]') as HTMLElement
    expect(verdict.dataset.verdict).toBe('fits_with_tp')
    expect(within(verdict).getByText('Fits with TP=2')).toBeTruthy()
    expect(within(verdict).getByText('fits on 2 GPUs with tensor parallelism')).toBeTruthy()
    expect(verdict.className).toContain('sky')
    // the numbers behind it
    expect(within(verdict).getByText('Memory estimate').closest('details')?.open).toBe(false)
    expect(within(verdict).getByText('28.0 GiB')).toBeTruthy()
    expect(within(verdict).getByText('KV cache (8,192 tokens)')).toBeTruthy()
    expect(within(verdict).getByTestId('verdict-required').textContent).toBe('31.5 GiB')
    expect(within(verdict).getByText('21.6 GiB')).toBeTruthy()
    expect(within(verdict).getByText('43.2 GiB')).toBeTruthy()
    expect(within(verdict).getByTestId('suggested-args').textContent).toBe('--tensor-parallel-size 2 --max-model-len 8192')
    expect(within(verdict).getByRole('button', { name: 'Copy arguments' })).toBeTruthy()

    const awq = card('qwen2.5-14b-awq')
    expect(within(awq).getByText('Does not fit').closest('[data-verdict]')?.className).toContain('red')
    expect(within(awq).getByText('bfloat16 · awq')).toBeTruthy()

    const smolCard = card('smollm2-135m')
    expect(smolCard.dataset.status).toBe('active')
    expect(within(smolCard).getByTestId('model-status').textContent).toBe('active')
    expect(within(smolCard).getByText('Runs on the CPU')).toBeTruthy()
    expect(within(smolCard).getByText('135M')).toBeTruthy()
    expect((within(smolCard).getByRole('button', { name: 'Switch to SmolLM2 135M' }) as HTMLButtonElement).disabled).toBe(true)

    const attached = card('xss-fake')
    expect(attached.dataset.status).toBe('ready')
    expect(within(attached).getByText('No hardware check (no profile)')).toBeTruthy()
    expect(within(attached).queryByRole('button', { name: /^Switch/ })).toBeNull()
  })

  it('renders the no-GPU verdict and disables switching when the gateway cannot switch', async () => {
    mockFetch(modelsRoutes({ 'GET /api/admin/models': () => json(modelList({ can_switch: false, switch_unavailable_reason: 'vLLM is not installed' })) }))
    render(<AdminModelsPage />)
    await screen.findByRole('heading', { name: 'DeepSeek-R1-Distill-Qwen-14B' })
    expect(screen.getByTestId('hardware-summary').textContent).toBe('No GPU detected')
    expect(screen.getByTestId('switch-unavailable').textContent).toContain('vLLM is not installed')
    const verdict = card('deepseek-r1-distill-qwen-14b').querySelector('[data-verdict]') as HTMLElement
    expect(verdict.dataset.verdict).toBe('no_gpu')
    expect(within(verdict).getByText('No GPU')).toBeTruthy()
    expect(within(verdict).getByText('no GPU detected: this profile needs a CUDA GPU')).toBeTruthy()
    expect(within(verdict).getByText('smollm2-135m')).toBeTruthy()
    expect((screen.getByRole('button', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B' }) as HTMLButtonElement).disabled).toBe(true)
  })

  it('switches after confirmation and follows the phases to ready', async () => {
    // The test moves the switch on; every poll answers the current state.
    let current: SwitchStatus | null = null
    const { calls } = mockFetch(
      modelsRoutes({
        'GET /api/admin/models/switch': () => json({ switch: current }),
        'POST /api/admin/models/deepseek-r1-distill-qwen-14b/switch': () => {
          current = switchStatus('draining')
          return json(current, 202)
        },
      }),
    )
    const polls = () => calls.filter((c) => c.url === '/api/admin/models/switch').length
    render(<AdminModelsPage switchPollMs={15} />)
    const button = await screen.findByRole('button', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B' })
    fireEvent.click(button)
    const dialog = screen.getByRole('dialog', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B?' })
    expect(dialog.textContent).toContain('In-flight requests finish first (up to 30 s), then the current engine stops and this one starts.')
    expect(dialog.textContent).toContain('The hardware check says: No GPU.')
    fireEvent.click(within(dialog).getByRole('button', { name: 'Switch' }))

    const panel = await screen.findByTestId('switch-panel')
    expect(calls.some((c) => c.method === 'POST' && c.url.endsWith('/switch'))).toBe(true)
    expect(within(panel).getByRole('status').textContent).toContain('Draining')
    expect(panel.querySelector('[data-step="draining"]')?.getAttribute('data-state')).toBe('current')
    expect(panel.textContent).toContain('SmolLM2 135M → DeepSeek-R1-Distill-Qwen-14B')
    // every switch and toggle waits while it runs
    expect((screen.getByRole('button', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B' }) as HTMLButtonElement).disabled).toBe(true)
    expect((screen.getByRole('switch', { name: 'Enabled: SmolLM2 135M' }) as HTMLButtonElement).disabled).toBe(true)
    // it polls while running
    const before = polls()
    await waitFor(() => expect(polls()).toBeGreaterThan(before + 1))

    current = switchStatus('stopping')
    await waitFor(() => expect(panel.dataset.phase).toBe('stopping'))
    current = switchStatus('starting', {
      log: [
        { at: '2025-01-01T00:00:01Z', message: 'draining 1 request' },
        { at: '2025-01-01T00:00:03Z', message: 'starting vllm serve' },
      ],
    })
    await waitFor(() => expect(panel.querySelector('[data-step="starting"]')?.getAttribute('data-state')).toBe('current'))
    expect(panel.querySelector('[data-step="draining"]')?.getAttribute('data-state')).toBe('done')
    expect(panel.querySelector('[data-step="stopping"]')?.getAttribute('data-state')).toBe('done')
    expect(panel.querySelector('[data-step="ready"]')?.getAttribute('data-state')).toBe('pending')
    expect(within(panel).getByTestId('switch-log').textContent).toContain('starting vllm serve')

    current = switchStatus('ready', { message: 'serving deepseek' })
    await waitFor(() => expect(panel.dataset.phase).toBe('ready'))
    expect(within(panel).getByTestId('switch-phase').textContent).toBe('Ready')
    expect([...panel.querySelectorAll('[data-step]')].map((el) => el.getAttribute('data-state'))).toEqual(['done', 'done', 'done', 'done'])
    expect(within(panel).getByTestId('switch-elapsed').textContent).toMatch(/Elapsed: \d+ s/)
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('Now serving DeepSeek-R1-Distill-Qwen-14B'))
    await waitFor(() => expect((screen.getByRole('button', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B' }) as HTMLButtonElement).disabled).toBe(false))

    // polling stops once the switch has ended
    const done = polls()
    await tick(80)
    expect(polls()).toBe(done)
    // the panel can be hidden afterwards
    fireEvent.click(within(panel).getByRole('button', { name: 'Hide' }))
    expect(screen.queryByTestId('switch-panel')).toBeNull()
  })

  it('shows a failed switch with the step it failed at', async () => {
    let current: SwitchStatus | null = null
    mockFetch(
      modelsRoutes({
        'GET /api/admin/models/switch': () => json({ switch: current }),
        'POST /api/admin/models/deepseek-r1-distill-qwen-14b/switch': () => {
          current = switchStatus('starting')
          return json(current, 202)
        },
      }),
    )
    render(<AdminModelsPage switchPollMs={15} />)
    fireEvent.click(await screen.findByRole('button', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B' }))
    fireEvent.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Switch' }))
    const panel = await screen.findByTestId('switch-panel')
    expect(panel.dataset.phase).toBe('starting')
    current = switchStatus('rolled_back', {
      message: 'engine did not become healthy; back on smollm2-135m',
      log: [{ at: '2025-01-01T00:00:09Z', message: 'vllm exited with status 1' }],
    })
    await waitFor(() => expect(panel.dataset.phase).toBe('rolled_back'))
    expect(within(panel).getByTestId('switch-phase').textContent).toBe('Rolled back')
    expect(within(panel).getByRole('status').textContent).toContain('engine did not become healthy')
    expect(within(panel).getByTestId('switch-log').textContent).toContain('vllm exited with status 1')
    expect([...panel.querySelectorAll('[data-step]')].map((el) => el.getAttribute('data-state'))).toEqual(['done', 'done', 'failed', 'pending'])
    await waitFor(() => expect(useUi.getState().toast).toMatchObject({ kind: 'error', text: 'The switch to DeepSeek-R1-Distill-Qwen-14B did not succeed' }))
    expect(within(panel).getByRole('button', { name: 'Hide' })).toBeTruthy()
  })

  it('picks up a switch already running when the page opens', async () => {
    let current: SwitchStatus | null = switchStatus('stopping')
    mockFetch(modelsRoutes({ 'GET /api/admin/models/switch': () => json({ switch: current }) }))
    render(<AdminModelsPage switchPollMs={15} />)
    const panel = await screen.findByTestId('switch-panel')
    expect(panel.dataset.phase).toBe('stopping')
    expect(within(panel).queryByRole('button', { name: 'Hide' })).toBeNull()
    current = switchStatus('failed', { message: 'out of memory' })
    await waitFor(() => expect(panel.dataset.phase).toBe('failed'))
    expect(within(panel).getByTestId('switch-phase').textContent).toBe('Failed')
    expect([...panel.querySelectorAll('[data-step]')].map((el) => el.getAttribute('data-state'))).toEqual(['done', 'failed', 'pending', 'pending'])
  })

  it('shows the 409 of a refused switch', async () => {
    mockFetch(
      modelsRoutes({
        'POST /api/admin/models/deepseek-r1-distill-qwen-14b/switch': () => apiError(409, 'switch_unavailable', 'vLLM is not installed'),
      }),
    )
    render(<AdminModelsPage switchPollMs={15} />)
    fireEvent.click(await screen.findByRole('button', { name: 'Switch to DeepSeek-R1-Distill-Qwen-14B' }))
    fireEvent.click(within(screen.getByRole('dialog')).getByRole('button', { name: 'Switch' }))
    await waitFor(() => expect(useUi.getState().toast).toMatchObject({ kind: 'error', text: 'vLLM is not installed' }))
    expect(screen.queryByTestId('switch-panel')).toBeNull()
  })

  it('enables and disables a model', async () => {
    const { calls } = mockFetch(modelsRoutes({ 'POST /api/admin/models/deepseek-r1-distill-qwen-14b/disable': () => json(model({ enabled: false })) }))
    render(<AdminModelsPage />)
    const toggle = await screen.findByRole('switch', { name: 'Enabled: DeepSeek-R1-Distill-Qwen-14B' })
    expect(toggle.getAttribute('aria-checked')).toBe('true')
    fireEvent.click(toggle)
    await waitFor(() => expect(screen.getByRole('switch', { name: 'Enabled: DeepSeek-R1-Distill-Qwen-14B' }).getAttribute('aria-checked')).toBe('false'))
    expect(calls.some((c) => c.method === 'POST' && c.url === '/api/admin/models/deepseek-r1-distill-qwen-14b/disable')).toBe(true)
    expect(useUi.getState().toast?.text).toBe('DeepSeek-R1-Distill-Qwen-14B disabled')
  })

  it('shows live engines and refreshes them while visible', async () => {
    const { calls } = mockFetch(
      modelsRoutes({
        'GET /api/admin/engines': [
          () => json({ engines: [engine()] }),
          () => json({ engines: [engine({ outstanding: 3 }), engine({ name: 'xss-fake', model_id: 'xss-fake', kind: 'attached', state: 'attached', healthy: false, circuit: 'open', metrics: null, last_error: 'connection refused' })] }),
        ],
      }),
    )
    render(<AdminModelsPage enginesPollMs={20} />)
    const first = await screen.findByText('embedded-0')
    const item = first.closest('[data-engine]') as HTMLElement
    expect(item.textContent).toContain('managed')
    expect(item.textContent).toContain('2 / 1')
    expect(item.textContent).toContain('42%')
    const attached = await screen.findByText('connection refused')
    const xss = attached.closest('[data-engine]') as HTMLElement
    expect(xss.textContent).toContain('attached')
    expect(xss.textContent).toContain('open')
    expect(xss.textContent).toContain('unavailable')
    expect(xss.textContent).toContain('– / –')

    setVisibility('hidden')
    await tick(30)
    const hiddenCount = calls.filter((c) => c.url === '/api/admin/engines').length
    await tick(80)
    expect(calls.filter((c) => c.url === '/api/admin/engines').length).toBe(hiddenCount)
    setVisibility('visible')
    await waitFor(() => expect(calls.filter((c) => c.url === '/api/admin/engines').length).toBeGreaterThan(hiddenCount))
  })

  it('shows each engine pool with its slots and fair queue', async () => {
    mockFetch(
      modelsRoutes({
        'GET /api/admin/engines': () =>
          json({
            engines: [engine({ capacity: 5, outstanding: 5 })],
            pools: [
              {
                model_id: 'smollm2-135m',
                capacity: 5,
                busy: 5,
                waiting: 3,
                waiting_by_priority: { interactive: 1, api: 2, batch: 0 },
                in_flight_by_user: { 'user:1': 5 },
                oldest_wait_seconds: 4.2,
                mean_hold_seconds: 2.5,
              },
            ],
          }),
      }),
    )
    render(<AdminModelsPage />)
    const pool = await screen.findByText((_, node) => node?.getAttribute('data-pool') === 'smollm2-135m')
    expect(pool.textContent).toContain('5 of 5 slots busy')
    expect(pool.textContent).toContain('3 waiting (oldest 4 s)')
    expect(pool.textContent).toContain('chat 1, API 2')
    expect(pool.textContent).not.toContain('batch')
    const item = (await screen.findByText('embedded-0')).closest('[data-engine]') as HTMLElement
    expect(item.textContent).toContain('5 / 5')
  })

  it('shows why a failed engine is not restarted any more', async () => {
    const diagnosis =
      'The engine smollm2-135m crashed 3 times within 300 s (last: killed by signal SIGSEGV) and is not restarted any more. Run `chatgate doctor`.'
    mockFetch(
      modelsRoutes({
        'GET /api/admin/engines': () =>
          json({ engines: [engine({ state: 'failed', healthy: false, failure: diagnosis, last_error: diagnosis, wedged_restarts: 2 })] }),
      }),
    )
    render(<AdminModelsPage />)
    const alert = await screen.findByTestId('engine-failure')
    expect(alert.textContent).toContain('Failed: not restarted any more')
    expect(alert.textContent).toContain('killed by signal SIGSEGV')
    const item = alert.closest('[data-engine]') as HTMLElement
    expect(item.textContent).toContain('Restarted 2 time(s) because it produced no token')
    expect(item.textContent).not.toContain('Last error')
  })

  it('checks a profile on other hardware', async () => {
    const { calls } = mockFetch(
      modelsRoutes({
        'GET /api/admin/models/deepseek-r1-distill-qwen-14b/check': () =>
          json(report({ gpus: 2, gpu_memory_bytes: 24 * GiB, usable_bytes_per_gpu: 21.6 * GiB, verdict: 'fits_with_tp', tensor_parallel_size: 2, message: 'fits with TP=2', suggested_args: ['--tensor-parallel-size', '2'] })),
      }),
    )
    render(<AdminModelsPage />)
    const profile = (await screen.findByLabelText('Profile')) as HTMLSelectElement
    fireEvent.change(profile, { target: { value: 'deepseek-r1-distill-qwen-14b' } })
    fireEvent.change(screen.getByLabelText('GPUs'), { target: { value: '2' } })
    fireEvent.change(screen.getByLabelText('Memory per GPU'), { target: { value: '24GiB' } })
    fireEvent.click(screen.getByRole('button', { name: 'Check' }))
    const result = await screen.findByTestId('check-result')
    expect(calls.at(-1)?.url).toBe('/api/admin/models/deepseek-r1-distill-qwen-14b/check?gpus=2&gpu_memory=24GiB')
    expect(within(result).getByText('Result for DeepSeek-R1-Distill-Qwen-14B')).toBeTruthy()
    expect(within(result).getByText('Fits with TP=2')).toBeTruthy()
    expect(within(result).getByText('Memory estimate').closest('details')?.open).toBe(true)
  })

  it('is in Korean too', async () => {
    useUi.setState({ language: 'ko' })
    mockFetch(modelsRoutes())
    render(<AdminModelsPage />)
    await screen.findByRole('heading', { name: '모델 프로필' })
    expect(within(card('deepseek-r1-distill-qwen-14b')).getByText('GPU 없음')).toBeTruthy()
    expect(within(card('smollm2-135m')).getByTestId('model-status').textContent).toBe('활성')
  })

  it('is only for admins', () => {
    signIn('user')
    const { fn } = mockFetch({})
    render(<AdminModelsPage />)
    expect(screen.getByRole('alert').textContent).toBe('Only administrators can see this page.')
    expect(fn).not.toHaveBeenCalled()
  })
})

const hardware = (overrides: Partial<HardwareStatus> = {}): HardwareStatus => ({ available: true, message: '2 GPU(s)', devices: [gpu(), gpu({ index: 1, memory_used_bytes: 23 * GiB, memory_used_mib: 23552, utilization_percent: null, temperature_c: null, power_w: null, power_limit_w: null })], ...overrides })

describe('AdminHardwarePage', () => {
  it('shows a clear empty state without a GPU', async () => {
    mockFetch({ 'GET /api/admin/hardware': () => json({ available: false, message: 'no GPU detected (NVML: driver not loaded)', devices: [] }) })
    render(<AdminHardwarePage />)
    const empty = await screen.findByTestId('no-gpu')
    expect(within(empty).getByRole('heading', { name: 'No GPU detected' })).toBeTruthy()
    expect(empty.textContent).toContain('no GPU detected (NVML: driver not loaded)')
    expect(screen.queryByRole('meter')).toBeNull()
  })

  it('shows gauges with the values of each GPU', async () => {
    mockFetch({ 'GET /api/admin/hardware': () => json(hardware()) })
    render(<AdminHardwarePage />)
    await screen.findByText('GPU 0')
    const memory = screen.getByRole('meter', { name: 'Memory, GPU 0' })
    expect(memory.getAttribute('aria-valuenow')).toBe(String(6 * GiB))
    expect(memory.getAttribute('aria-valuemax')).toBe(String(24 * GiB))
    expect(memory.getAttribute('aria-valuetext')).toBe('6.0 / 24.0 GiB')
    expect((memory.firstElementChild as HTMLElement).style.width).toBe('25%')
    const utilization = screen.getByRole('meter', { name: 'Utilisation, GPU 0' })
    expect(utilization.getAttribute('aria-valuenow')).toBe('57')
    expect(utilization.getAttribute('aria-valuetext')).toBe('57%')
    expect(screen.getByRole('meter', { name: 'Temperature, GPU 0' }).getAttribute('aria-valuetext')).toBe('65 °C')
    const power = screen.getByRole('meter', { name: 'Power, GPU 0' })
    expect(power.getAttribute('aria-valuetext')).toBe('250 / 350 W')
    expect(power.getAttribute('aria-valuemax')).toBe('350')
    // a nearly full GPU turns red; missing sensors read n/a without a meter
    const second = document.querySelector('[data-gpu="1"]') as HTMLElement
    const full = within(second).getByRole('meter', { name: 'Memory, GPU 1' })
    expect((full.firstElementChild as HTMLElement).className).toContain('bg-red-600')
    expect(within(second).getAllByRole('meter')).toHaveLength(1)
    expect(within(second).getAllByText('n/a')).toHaveLength(3)
  })

  it('refreshes every interval and stops polling when unmounted', async () => {
    let used = 1
    const { calls } = mockFetch({ 'GET /api/admin/hardware': () => json(hardware({ devices: [gpu({ memory_used_bytes: used++ * GiB })] })) })
    const view = render(<AdminHardwarePage pollMs={15} />)
    await waitFor(() => expect(screen.getByRole('meter', { name: 'Memory, GPU 0' }).getAttribute('aria-valuenow')).not.toBe(String(GiB)))
    expect(calls.length).toBeGreaterThan(1)
    view.unmount()
    const count = calls.length
    await tick(80)
    expect(calls.length).toBe(count)
  })

  it('pauses while the tab is hidden', async () => {
    const { calls } = mockFetch({ 'GET /api/admin/hardware': () => json(hardware()) })
    render(<AdminHardwarePage pollMs={15} />)
    await screen.findByText('GPU 0')
    setVisibility('hidden')
    await tick(30)
    const count = calls.length
    await tick(80)
    expect(calls.length).toBe(count)
    setVisibility('visible')
    await waitFor(() => expect(calls.length).toBeGreaterThan(count))
  })
})

describe('usePolling', () => {
  it('runs now, then after each run, never overlapping, and not after unmount', async () => {
    vi.useFakeTimers()
    let active = 0
    let most = 0
    let runs = 0
    const task = vi.fn(async () => {
      active += 1
      most = Math.max(most, active)
      runs += 1
      await new Promise((resolve) => setTimeout(resolve, 50))
      active -= 1
    })
    const { unmount, rerender } = renderHook(({ enabled }) => usePolling(task, 100, enabled), { initialProps: { enabled: true } })
    expect(runs).toBe(1)
    await act(async () => {
      await vi.advanceTimersByTimeAsync(50 + 100 + 50 + 100)
    })
    expect(runs).toBe(3)
    expect(most).toBe(1)
    rerender({ enabled: false })
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1000)
    })
    expect(runs).toBe(3)
    rerender({ enabled: true })
    expect(runs).toBe(4)
    unmount()
    await act(async () => {
      await vi.advanceTimersByTimeAsync(1000)
    })
    expect(runs).toBe(4)
  })
})
