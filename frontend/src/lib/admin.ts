// Pure helpers for the admin model and hardware pages (formatting, status and switch logic).

import type { AdminModel, SwitchPhase, SwitchStatus, Verdict } from '../api/types'

const GIB = 1024 ** 3

/** Bytes as GiB with one decimal ("13.8"), or "–". */
export function gib(bytes: number | null | undefined, digits = 1): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '–'
  return (bytes / GIB).toFixed(digits)
}

/** Parameter count in billions as "14B", "7.8B", "135M". */
export function formatParams(billions: number | null | undefined): string {
  if (billions === null || billions === undefined || !Number.isFinite(billions) || billions <= 0) return '–'
  if (billions < 1) return `${Math.round(billions * 1000)}M`
  return `${Number(billions.toFixed(billions < 10 ? 1 : 0))}B`
}

export type ModelStatus = 'active' | 'ready' | 'starting' | 'unhealthy' | 'not_running'

/** The one status badge a model shows. */
export function modelStatus(model: Pick<AdminModel, 'active' | 'healthy' | 'state'>): ModelStatus {
  if (model.state === 'starting') return 'starting'
  if (model.state === 'failed') return 'unhealthy'
  if (model.state !== 'ready' && model.state !== 'attached') return 'not_running'
  if (model.healthy === false) return 'unhealthy'
  return model.active ? 'active' : 'ready'
}

export type Tone = 'good' | 'info' | 'warn' | 'bad' | 'neutral'

export const STATUS_TONE: Record<ModelStatus, Tone> = {
  active: 'good',
  ready: 'good',
  starting: 'warn',
  unhealthy: 'bad',
  not_running: 'neutral',
}

export const VERDICT_TONE: Record<Verdict, Tone> = {
  fits: 'good',
  fits_with_tp: 'info',
  does_not_fit: 'bad',
  no_gpu: 'warn',
  cpu: 'neutral',
}

/** Badge colours per tone, light and dark. */
export const TONE_CLASS: Record<Tone, string> = {
  good: 'bg-accent-50 text-accent-800 dark:bg-accent-700/30 dark:text-accent-50',
  info: 'bg-sky-50 text-sky-800 dark:bg-sky-950 dark:text-sky-200',
  warn: 'bg-amber-50 text-amber-900 dark:bg-amber-950 dark:text-amber-200',
  bad: 'bg-red-50 text-red-800 dark:bg-red-950 dark:text-red-200',
  neutral: 'bg-zinc-100 text-zinc-700 dark:bg-zinc-800 dark:text-zinc-200',
}

export const TONE_DOT: Record<Tone, string> = {
  good: 'bg-accent-600',
  info: 'bg-sky-600',
  warn: 'bg-amber-500',
  bad: 'bg-red-600',
  neutral: 'bg-zinc-400',
}

export const SWITCH_STEPS = ['draining', 'stopping', 'starting', 'ready'] as const
export type SwitchStep = (typeof SWITCH_STEPS)[number]
export type StepState = 'done' | 'current' | 'pending' | 'failed'

const TERMINAL: ReadonlySet<SwitchPhase> = new Set(['ready', 'failed', 'rolled_back'])

export const isSwitchRunning = (status: SwitchStatus | null | undefined): boolean => !!status && !TERMINAL.has(status.phase)

/**
 * The state of each step of a switch. `reached` is the last running phase seen (for a failed
 * switch: where it failed; unknown when the page only ever saw the end).
 */
export function switchSteps(phase: SwitchPhase, reached: SwitchStep | null = null): { step: SwitchStep; state: StepState }[] {
  if (phase === 'ready') return SWITCH_STEPS.map((step) => ({ step, state: 'done' as const }))
  if (phase === 'failed' || phase === 'rolled_back') {
    const at = reached ? SWITCH_STEPS.indexOf(reached) : -1
    return SWITCH_STEPS.map((step, i) => ({ step, state: at < 0 ? 'pending' : i < at ? 'done' : i === at ? 'failed' : 'pending' }))
  }
  const at = SWITCH_STEPS.indexOf(phase)
  return SWITCH_STEPS.map((step, i) => ({ step, state: i < at ? 'done' : i === at ? 'current' : 'pending' }))
}

/** Seconds between two ISO times (or until `now`), never negative. */
export function elapsedSeconds(startedAt: string, finishedAt: string | null, now: number = Date.now()): number {
  const start = Date.parse(startedAt)
  const end = finishedAt ? Date.parse(finishedAt) : now
  if (!Number.isFinite(start) || !Number.isFinite(end)) return 0
  return Math.max(0, Math.round((end - start) / 1000))
}

/** "42 s", "3 min 05 s". */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`
  const m = Math.floor(seconds / 60)
  return `${m} min ${String(seconds % 60).padStart(2, '0')} s`
}

/** A percentage clamped to 0..100, or null. */
export function percent(value: number | null | undefined, max: number | null | undefined = 100): number | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null
  if (!max || !Number.isFinite(max) || max <= 0) return null
  return Math.min(100, Math.max(0, (value / max) * 100))
}

/** Colour of a gauge bar by how full it is. */
export function gaugeClass(pct: number | null, warnAt = 75, badAt = 90): string {
  if (pct === null) return 'bg-zinc-400'
  if (pct >= badAt) return 'bg-red-600'
  if (pct >= warnAt) return 'bg-amber-500'
  return 'bg-accent-600'
}

/** Arguments as one shell line, quoting those that need it. */
export function shellLine(args: readonly string[]): string {
  return args.map((arg) => (arg === '' ? "''" : /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' ')
}
