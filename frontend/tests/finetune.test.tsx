import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { fireEvent, render, screen, waitFor, within } from '@testing-library/react'
import type { Deployment, FinetuneJob, FinetuneJobDetail, GateVerdict, RegisteredModel, RegisteredVersion, VersionEvaluation } from '../src/api/types'
import { AdminFinetunePage } from '../src/pages/AdminFinetunePage'
import { LossChart, curvePoints, CHART_HEIGHT, CHART_WIDTH } from '../src/components/admin/finetune/LossChart'
import { EMPTY_JOB, jobRequest } from '../src/components/admin/finetune/JobForm'
import { parseVersionRef } from '../src/components/admin/finetune/VersionPanel'
import { scorePair } from '../src/components/admin/finetune/EvalScores'
import { jobProgress, versionRef } from '../src/components/admin/finetune/status'
import { useAuth } from '../src/stores/auth'
import { useUi } from '../src/stores/ui'
import { parseRoute } from '../src/stores/router'
import { apiError, json, mockFetch } from './helpers'

function job(overrides: Partial<FinetuneJob> = {}): FinetuneJob {
  return {
    id: 'job-0123456789abcdef',
    status: 'running',
    base: 'smollm2-135m',
    dataset: '/data/datasets/20261207-abc/train.jsonl',
    params: {},
    owner: 'admin',
    step: 5,
    total_steps: 20,
    epoch: 1,
    loss: 1.25,
    learning_rate: 0.0002,
    tokens_per_second: 812,
    cancel_requested: false,
    dataset_sha256: null,
    mlflow_run_id: null,
    model_name: null,
    model_version: null,
    gguf_lora: null,
    error: null,
    created_at: '2026-12-07T07:00:00Z',
    heartbeat_at: null,
    finished_at: null,
    ...overrides,
  }
}

const detail = (overrides: Partial<FinetuneJobDetail> = {}): FinetuneJobDetail => ({
  ...job(overrides),
  curve: [
    { step: 1, loss: 2.5 },
    { step: 3, loss: 1.75 },
    { step: 5, loss: 1.25 },
  ],
  log_file: '/data/finetune/job.log',
  ...overrides,
})

function verdict(gate: 'passed' | 'failed'): GateVerdict {
  return {
    model: 'smollm2-135m-zanthia',
    version: '1',
    gate,
    reasons: gate === 'failed' ? ['heldout keyword 0.10 below base 0.20'] : [],
    scores: { heldout: { base: { exact: 0, keyword: 0.2, perplexity: 12.5, count: 8 }, candidate: { exact: 0.125, keyword: 0.1, perplexity: 9.25, count: 8 } } },
    leaks: [],
    tolerance: { keyword: 0.05 },
    run_id: 'r1',
    evaluation_run_id: 'e1',
  }
}

const scores = (keyword: number, perplexity: number) => ({
  heldout_exact: null,
  heldout_keyword: keyword,
  heldout_perplexity: perplexity,
  regression_exact: null,
  regression_keyword: null,
  regression_perplexity: null,
})

const evaluation = (overrides: Partial<VersionEvaluation> = {}): VersionEvaluation => ({
  model: 'smollm2-135m:zanthia@2',
  gate: 'failed',
  passed: false,
  reasons: ['regression: keyword score 0.500 vs base 0.600'],
  base: scores(0.2, 12.5),
  candidate: scores(0.8, 3.25),
  leaks: 1,
  evaluated_at: '2026-12-07T09:05:00Z',
  evaluation_run_id: 'e2',
  tolerance: { keyword: 0.05, perplexity: 0.05 },
  ...overrides,
})

const version = (number: number, overrides: Partial<RegisteredVersion> = {}): RegisteredVersion => ({
  version: number,
  ref: `smollm2-135m-zanthia@${number}`,
  model_id: `smollm2-135m:zanthia@${number}`,
  aliases: [],
  run_id: `run-${number}`,
  created_at: '2026-12-07T09:00:00Z',
  dataset_sha256: null,
  dataset: null,
  deployable: true,
  promoted_at: null,
  forced_by: null,
  evaluation: null,
  ...overrides,
})

const zanthia: RegisteredModel = {
  name: 'smollm2-135m-zanthia',
  base: 'smollm2-135m',
  fine_tune: 'zanthia',
  model: 'smollm2-135m:zanthia',
  description: null,
  versions: [version(2, { aliases: ['challenger', 'champion'], forced_by: 'ann', evaluation: evaluation() }), version(1, { aliases: ['previous_champion'] })],
}

const deployment = (modelId: string): Deployment => ({ model_id: modelId, base: 'smollm2-135m', name: 'zanthia', version: 1, gguf: '/x.gguf' })

/** The button once the action before it has finished (one action at a time). */
async function enabled(button: HTMLElement): Promise<HTMLElement> {
  await waitFor(() => expect((button as HTMLButtonElement).disabled).toBe(false))
  return button
}

const splitRates = (model: string, up_rate: number | null) => ({ model, answers: 10, rated: 4, up: 3, down: 1, corrected: 0, up_rate, down_rate: 0.25, rated_share: 0.4 })

/** Routes every call the page makes on open; `extra` adds or overrides routes. */
function page(extra: Parameters<typeof mockFetch>[0] = {}) {
  return mockFetch({
    'GET /api/admin/finetune/jobs': () => json({ jobs: [] }),
    'GET /api/admin/datasets': () => json({ datasets: [] }),
    'GET /api/admin/models/splits': () => json({ splits: [] }),
    'GET /api/admin/models/deployments': () => json({ deployments: [] }),
    'GET /api/admin/models/versions': () => json({ models: [] }),
    ...extra,
  })
}

beforeEach(() => {
  useUi.setState({ language: 'en', toast: null })
  useAuth.setState({ identity: { username: 'admin', role: 'admin', exp: null, user_id: 1 }, status: 'authenticated' })
})
afterEach(() => {
  vi.unstubAllGlobals()
})

describe('fine-tuning helpers', () => {
  it('scales the loss curve into the chart, highest loss at the top', () => {
    const points = curvePoints([{ step: 0, loss: 3 }, { step: 10, loss: 1 }], 100, 50).split(' ')
    expect(points).toEqual(['8.0,8.0', '92.0,42.0'])
    expect(curvePoints([])).toBe('')
    // a single point or a flat curve sits in the middle, not at NaN
    expect(curvePoints([{ step: 4, loss: 2 }])).toBe(`${(CHART_WIDTH / 2).toFixed(1)},${(CHART_HEIGHT / 2).toFixed(1)}`)
  })

  it('turns the form into the API request, leaving blanks to the trainer', () => {
    expect(jobRequest({ ...EMPTY_JOB, dataset: ' 20261207-abc ' })).toEqual({ dataset: '20261207-abc', base: 'smollm2-135m', epochs: 2, lr: 0.0002, rank: 16 })
    expect(jobRequest({ ...EMPTY_JOB, dataset: 'd', maxSteps: '30', name: 'zanthia', epochs: '' })).toEqual({ dataset: 'd', base: 'smollm2-135m', lr: 0.0002, rank: 16, max_steps: 30, name: 'zanthia' })
  })

  it('parses NAME@VERSION and reads progress and versions of jobs', () => {
    expect(parseVersionRef('smollm2-135m-zanthia@3')).toEqual(['smollm2-135m-zanthia', '3'])
    expect(parseVersionRef('smollm2-135m-zanthia@champion')).toBeNull()
    expect(parseVersionRef('@1')).toBeNull()
    expect(jobProgress(job())).toBe(25)
    expect(jobProgress(job({ total_steps: null }))).toBeNull()
    expect(jobProgress(job({ status: 'succeeded', step: 3 }))).toBe(100)
    expect(versionRef(job({ model_name: 'm', model_version: '2' }))).toBe('m@2')
    expect(versionRef(job())).toBeNull()
    expect(parseRoute('/admin/finetune')).toEqual({ name: 'adminFinetune' })
  })
})

describe('LossChart', () => {
  it('draws one line and describes it for screen readers', () => {
    render(<LossChart curve={detail().curve} />)
    const chart = screen.getByRole('img')
    expect(chart.getAttribute('aria-label')).toBe('Training loss over 3 points: from 2.50 to 1.25 at step 5')
    expect(chart.querySelector('polyline')?.getAttribute('points')?.split(' ')).toHaveLength(3)
    expect(screen.getByText('loss 1.25 – 2.50')).toBeTruthy()
  })

  it('says so when there is no loss yet', () => {
    render(<LossChart curve={[]} />)
    expect(screen.getByTestId('loss-empty').textContent).toBe('No loss reported yet.')
    expect(screen.queryByRole('img')).toBeNull()
  })
})

describe('AdminFinetunePage', () => {
  it('is for admins only', () => {
    useAuth.setState({ identity: { username: 'bob', role: 'user', exp: null, user_id: 2 } })
    page()
    render(<AdminFinetunePage />)
    expect(screen.getByRole('alert').textContent).toBe('Only administrators can see this page.')
  })

  it('starts a job with the form and follows its loss curve until it ends', async () => {
    let polls = 0
    const { calls } = page({
      'GET /api/admin/datasets': () => json({ datasets: [{ version: '20261207-abc', counts: { train: 9, heldout: 1 } }] }),
      'POST /api/admin/finetune/jobs': () => json(detail({ step: 0, curve: [] }), 202),
      'GET /api/admin/finetune/jobs/job-0123456789abcdef': () => {
        polls += 1
        return json(polls < 3 ? detail() : detail({ status: 'succeeded', step: 20, model_name: 'smollm2-135m-zanthia', model_version: '1' }))
      },
    })
    render(<AdminFinetunePage pollMs={10} />)
    await screen.findByTestId('finetune-no-jobs')
    await waitFor(() => expect(document.querySelector('#finetune-exports option')?.getAttribute('value')).toBe('20261207-abc'))
    fireEvent.change(screen.getByLabelText('Dataset'), { target: { value: '20261207-abc' } })
    fireEvent.change(screen.getByLabelText('Max steps'), { target: { value: '20' } })
    fireEvent.change(screen.getByLabelText('Name'), { target: { value: 'zanthia' } })
    fireEvent.click(screen.getByRole('button', { name: 'Start job' }))
    await waitFor(() => expect(calls.some((c) => c.method === 'POST')).toBe(true))
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ dataset: '20261207-abc', base: 'smollm2-135m', epochs: 2, lr: 0.0002, rank: 16, max_steps: 20, name: 'zanthia' })
    const panel = await screen.findByTestId('finetune-detail')
    // the curve arrives by polling while the job runs, then polling stops once it has ended
    await within(panel).findByRole('img', { name: /Training loss over 3 points/ })
    await within(panel).findByText('Succeeded')
    const done = polls
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(polls).toBe(done)
    // the version the job registered goes to the versions form
    fireEvent.click(within(panel).getByRole('button', { name: 'Use smollm2-135m-zanthia@1' }))
    expect((screen.getByLabelText('Registered version (NAME@VERSION)') as HTMLInputElement).value).toBe('smollm2-135m-zanthia@1')
  })

  it('shows the API refusal of a job as an error in the form', async () => {
    page({ 'POST /api/admin/finetune/jobs': () => apiError(400, 'invalid_value', "dataset 'nope': no such JSONL file or export") })
    render(<AdminFinetunePage />)
    fireEvent.change(await screen.findByLabelText('Dataset'), { target: { value: 'nope' } })
    fireEvent.click(screen.getByRole('button', { name: 'Start job' }))
    expect((await screen.findByTestId('finetune-error')).textContent).toBe("dataset 'nope': no such JSONL file or export")
    expect(screen.getByTestId('finetune-no-jobs')).toBeTruthy()
  })

  it('lists jobs with status and progress, and cancels a running one', async () => {
    const { calls } = page({
      'GET /api/admin/finetune/jobs': () => json({ jobs: [job(), job({ id: 'job-2', status: 'failed', error: 'boom' })] }),
      'GET /api/admin/finetune/jobs/job-0123456789abcdef': () => json(detail()),
      'POST /api/admin/finetune/jobs/job-0123456789abcdef/cancel': () => json(detail({ cancel_requested: true }), 202),
    })
    render(<AdminFinetunePage pollMs={60_000} />)
    const row = (await screen.findByText('job-01234567')).closest('tr') as HTMLElement
    expect(within(row).getByText('Running')).toBeTruthy()
    expect(within(row).getByRole('progressbar').getAttribute('aria-valuenow')).toBe('25')
    expect(within(row).getByText('5 / 20 steps')).toBeTruthy()
    expect(within(document.querySelector('[data-job="job-2"]') as HTMLElement).getByText('Failed')).toBeTruthy()
    fireEvent.click(within(row).getByRole('button', { name: 'Details' }))
    const panel = await screen.findByTestId('finetune-detail')
    fireEvent.click(await within(panel).findByRole('button', { name: 'Cancel job' }))
    await within(panel).findByRole('button', { name: 'Cancelling…' })
    expect(calls.some((c) => c.method === 'POST' && c.url.endsWith('/cancel'))).toBe(true)
  })

  it('evaluates a version, shows the failed verdict, and force-promotes only after a confirm', async () => {
    const { calls } = page({
      'POST /api/admin/finetune/versions/smollm2-135m-zanthia/1/evaluate': () => json(verdict('failed')),
      'POST /api/admin/finetune/versions/smollm2-135m-zanthia/1/promote': () =>
        json({ model: 'smollm2-135m-zanthia', version: '1', gate: 'failed', promoted: true, forced: true, previous_champion: null }),
    })
    render(<AdminFinetunePage />)
    const input = await screen.findByLabelText('Registered version (NAME@VERSION)')
    expect((screen.getByRole('button', { name: 'Evaluate' }) as HTMLButtonElement).disabled).toBe(true)
    fireEvent.change(input, { target: { value: 'smollm2-135m-zanthia@1' } })
    fireEvent.click(screen.getByRole('button', { name: 'Evaluate' }))
    const shown = await screen.findByTestId('gate-verdict')
    expect(within(shown).getByText('Gate failed')).toBeTruthy()
    expect(within(shown).getByText('heldout keyword 0.10 below base 0.20')).toBeTruthy()
    const candidate = shown.querySelector('[data-score="heldout-candidate"]') as HTMLElement
    expect([...candidate.querySelectorAll('td')].map((td) => td.textContent)).toEqual(['0.125', '0.100', '9.250', '8'])
    fireEvent.click(screen.getByRole('button', { name: 'Promote' }))
    const dialog = await screen.findByRole('dialog')
    expect(calls.some((c) => c.url.endsWith('/promote'))).toBe(false)
    fireEvent.click(within(dialog).getByRole('button', { name: 'Force promote' }))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('smollm2-135m-zanthia@1 is now the champion'))
    expect(calls.find((c) => c.url.endsWith('/promote'))?.body).toEqual({ force: true })
  })

  it('asks for force when the server refuses a promotion without a verdict here', async () => {
    page({ 'POST /api/admin/finetune/versions/m/2/promote': (call) => ((call.body as { force: boolean }).force ? json({ model: 'm', version: '2', gate: 'failed', promoted: true, forced: true, previous_champion: '1' }) : apiError(409, 'gate_failed', 'promotion refused: gate failed')) })
    render(<AdminFinetunePage />)
    fireEvent.change(await screen.findByLabelText('Registered version (NAME@VERSION)'), { target: { value: 'm@2' } })
    fireEvent.click(screen.getByRole('button', { name: 'Promote' }))
    fireEvent.click(within(await screen.findByRole('dialog')).getByRole('button', { name: 'Force promote' }))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('m@2 is now the champion'))
  })

  it('deploys and rolls back a version', async () => {
    const { calls } = page({
      'POST /api/admin/models/deploy': () => json({ model_id: 'smollm2-135m:zanthia@1', base: 'smollm2-135m', name: 'zanthia', version: 1, gguf: '/x.gguf' }),
      'POST /api/admin/models/rollback': () => json({ model_id: 'smollm2-135m:zanthia@0', base: 'smollm2-135m', name: 'zanthia', version: 0, gguf: '/y.gguf' }),
    })
    render(<AdminFinetunePage />)
    fireEvent.change(await screen.findByLabelText('Registered version (NAME@VERSION)'), { target: { value: 'smollm2-135m-zanthia@1' } })
    fireEvent.click(screen.getByRole('button', { name: 'Deploy' }))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('smollm2-135m:zanthia@1 is deployed'))
    expect(calls.find((c) => c.url === '/api/admin/models/deploy')?.body).toEqual({ model: 'smollm2-135m-zanthia@1' })
    fireEvent.click(screen.getByRole('button', { name: 'Roll back' }))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('Rolled back to smollm2-135m:zanthia@0'))
    expect(calls.find((c) => c.url === '/api/admin/models/rollback')?.body).toEqual({ name: 'smollm2-135m-zanthia' })
  })

  it('sets an A/B split and shows both sides’ feedback rates', async () => {
    const { calls } = page({
      'POST /api/admin/models/splits': () =>
        json({ splits: [{ base: 'smollm2-135m', to: 'smollm2-135m:zanthia@1', percent: 25, rates: [splitRates('smollm2-135m', 0.5), splitRates('smollm2-135m:zanthia@1', 0.75)] }] }),
    })
    render(<AdminFinetunePage />)
    await screen.findByTestId('no-splits')
    const form = screen.getByRole('form', { name: 'A/B split' })
    fireEvent.change(within(form).getByLabelText('Base model'), { target: { value: 'smollm2-135m' } })
    fireEvent.change(within(form).getByLabelText('Challenger'), { target: { value: 'smollm2-135m:zanthia@1' } })
    fireEvent.change(within(form).getByLabelText('Share (%)'), { target: { value: '25' } })
    fireEvent.click(within(form).getByRole('button', { name: 'Set split' }))
    const row = (await screen.findByText('smollm2-135m → smollm2-135m:zanthia@1 (25 %)')).closest('tr') as HTMLElement
    expect(calls.find((c) => c.method === 'POST')?.body).toEqual({ base: 'smollm2-135m', to: 'smollm2-135m:zanthia@1', percent: 25 })
    const cells = [...row.querySelectorAll('td')].map((td) => td.textContent)
    expect(cells).toEqual(['50 %4 rated of 10, down 25 %', '75 %4 rated of 10, down 25 %'])
  })

  it('lists the registered versions with aliases, verdicts and scores, and acts on each', async () => {
    let listed = 0
    const { calls } = page({
      'GET /api/admin/models/versions': () => {
        listed += 1
        return json({ models: [zanthia] })
      },
      'POST /api/admin/finetune/versions/smollm2-135m-zanthia/1/evaluate': () => json(verdict('passed')),
      'POST /api/admin/finetune/versions/smollm2-135m-zanthia/2/promote': () =>
        json({ model: 'smollm2-135m-zanthia', version: '2', gate: 'failed', promoted: true, forced: true, previous_champion: '1' }),
      'POST /api/admin/models/deploy': () => json(deployment('smollm2-135m:zanthia@2')),
      'POST /api/admin/models/rollback': () =>
        json({ model_id: 'smollm2-135m', base: 'smollm2-135m', name: 'zanthia', version: null, undeployed: ['smollm2-135m:zanthia@2'] }),
    })
    render(<AdminFinetunePage />)
    const table = await screen.findByTestId('registered-versions')
    const newest = (await within(table).findByText('challenger')).closest('tr') as HTMLElement
    expect(newest.getAttribute('data-version')).toBe('smollm2-135m-zanthia@2')
    expect(within(newest).getByText('champion')).toBeTruthy()
    expect(within(newest).getByTestId('version-gate').textContent).toBe('Gate failed (forced)')
    expect(within(newest).getByText('1 leak(s)')).toBeTruthy()
    expect(within(newest).getByText('held-out: keyword 0.80 (0.20), perplexity 3.25 (12.50)')).toBeTruthy()
    expect(within(newest).getByText('regression: keyword score 0.500 vs base 0.600')).toBeTruthy()
    const oldest = table.querySelector('[data-version="smollm2-135m-zanthia@1"]') as HTMLElement
    expect(within(oldest).getByTestId('version-gate').textContent).toBe('Not evaluated')
    expect(within(table).getByRole('region', { name: 'Versions of smollm2-135m:zanthia' })).toBeTruthy()

    // evaluating reloads the list (the server dropped its cached copy)
    fireEvent.click(within(oldest).getByRole('button', { name: 'Evaluate smollm2-135m-zanthia@1' }))
    await waitFor(() => expect(listed).toBe(2))
    // the gate failed here: the force confirm comes before any promotion call
    fireEvent.click(await enabled(within(newest).getByRole('button', { name: 'Promote smollm2-135m-zanthia@2' })))
    const dialog = await screen.findByRole('dialog')
    expect(calls.some((c) => c.url.endsWith('/promote'))).toBe(false)
    fireEvent.click(within(dialog).getByRole('button', { name: 'Force promote' }))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('smollm2-135m-zanthia@2 is now the champion'))
    expect(calls.find((c) => c.url.endsWith('/promote'))?.body).toEqual({ force: true })

    fireEvent.click(await enabled(within(newest).getByRole('button', { name: 'Deploy smollm2-135m:zanthia@2' })))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('smollm2-135m:zanthia@2 is deployed'))
    expect(calls.find((c) => c.url === '/api/admin/models/deploy')?.body).toEqual({ model: 'smollm2-135m:zanthia@2' })

    fireEvent.click(await enabled(within(table).getByRole('button', { name: 'Roll back to base smollm2-135m:zanthia' })))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe('smollm2-135m:zanthia is back on its base model'))
    expect(calls.find((c) => c.url === '/api/admin/models/rollback')?.body).toEqual({ name: 'smollm2-135m:zanthia', to_base: true })
  })

  it('says why the versions cannot be listed', async () => {
    page({ 'GET /api/admin/models/versions': () => apiError(503, 'training_unavailable', 'fine-tuning is not installed here') })
    render(<AdminFinetunePage />)
    expect((await screen.findByTestId('versions-error')).textContent).toBe('fine-tuning is not installed here')
    expect(screen.queryByTestId('no-versions')).toBeNull()
  })

  it('lists the deployments and undeploys one', async () => {
    const id = 'smollm2-135m:zanthia@1'
    const { calls } = page({
      'GET /api/admin/models/deployments': [() => json({ deployments: [deployment(id)] }), () => json({ deployments: [] })],
      [`DELETE /api/admin/models/deployments/${encodeURIComponent(id)}`]: () => json({ deployments: [] }),
    })
    render(<AdminFinetunePage />)
    const row = (await screen.findByText(id, { selector: '[data-deployment] code' })).closest('li') as HTMLElement
    fireEvent.click(within(row).getByRole('button', { name: `Undeploy ${id}` }))
    await waitFor(() => expect(useUi.getState().toast?.text).toBe(`${id} is no longer served`))
    await screen.findByTestId('no-deployments')
    expect(calls.filter((c) => c.method === 'DELETE')).toHaveLength(1)
    // the splits are read again: one to the undeployed version has ended
    expect(calls.filter((c) => c.url === '/api/admin/models/splits')).toHaveLength(2)
  })

  it('shows the gate’s scores beside the feedback rates of a split', async () => {
    const split = {
      base: 'smollm2-135m',
      to: 'smollm2-135m:zanthia@2',
      percent: 25,
      rates: [splitRates('smollm2-135m', 0.5), splitRates('smollm2-135m:zanthia@2', 0.75)],
      evaluation: evaluation(),
    }
    page({ 'GET /api/admin/models/splits': () => json({ splits: [split] }) })
    render(<AdminFinetunePage />)
    const row = (await screen.findByText('smollm2-135m → smollm2-135m:zanthia@2 (25 %)')).closest('tr') as HTMLElement
    const [base, challenger] = [...row.querySelectorAll<HTMLElement>('td')]
    if (!base || !challenger) throw new Error('a split row has a base and a challenger cell')
    expect(base.textContent).toContain('50 %')
    expect(within(base).getByRole('list', { name: 'Evaluation scores' }).textContent).toBe('held-out: keyword 0.20, perplexity 12.50')
    expect(within(base).queryByTestId('version-gate')).toBeNull()
    expect(within(challenger).getByRole('list', { name: 'Evaluation scores' }).textContent).toBe('held-out: keyword 0.80, perplexity 3.25')
    expect(within(challenger).getByTestId('version-gate').textContent).toBe('Gate failed')
    expect(scorePair(0.5, null)).toBe('0.50')
    expect(scorePair(null, 0.5)).toBe('–')
  })
})
