import { Circle, CircleCheck, CircleX, LoaderCircle, X } from 'lucide-react'
import { type SwitchStatus } from '../../api'
import { useUi } from '../../stores/ui'
import { useT } from '../../i18n'
import { elapsedSeconds, formatDuration, isSwitchRunning, switchSteps, type StepState, type SwitchStep, type Tone } from '../../lib/admin'
import { Badge, MUTED } from './parts'

const STEP_ICON: Record<StepState, React.ReactNode> = {
  done: <CircleCheck className="size-4 text-accent-700 dark:text-accent-500" aria-hidden />,
  current: <LoaderCircle className="size-4 animate-spin text-sky-700 motion-reduce:animate-none dark:text-sky-300" aria-hidden />,
  pending: <Circle className="size-4 text-zinc-400" aria-hidden />,
  failed: <CircleX className="size-4 text-red-600 dark:text-red-400" aria-hidden />,
}

const PHASE_TONE: Record<SwitchStatus['phase'], Tone> = {
  draining: 'info',
  stopping: 'info',
  starting: 'info',
  ready: 'good',
  failed: 'bad',
  rolled_back: 'warn',
}

/** Progress of the running (or last) model switch. */
export function SwitchPanel({
  status,
  reached,
  now,
  nameOf,
  onHide,
}: {
  status: SwitchStatus
  reached: SwitchStep | null
  now: number
  nameOf: (id: string | null) => string
  onHide?: () => void
}) {
  const t = useT()
  const language = useUi((s) => s.language)
  const running = isSwitchRunning(status)
  const steps = switchSteps(status.phase, reached)
  const elapsed = formatDuration(elapsedSeconds(status.started_at, status.finished_at, now))
  const time = (iso: string) => {
    const date = new Date(iso)
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleTimeString(language, { hour12: false })
  }
  return (
    <section aria-labelledby="switch-title" className="card" data-testid="switch-panel" data-phase={status.phase}>
      <div className="flex flex-wrap items-start justify-between gap-2">
        <div className="min-w-0">
          <h2 id="switch-title" className="text-base font-semibold">
            {t('models.switchTitle')}
          </h2>
          <p className={`break-words text-sm ${MUTED}`}>
            {t('models.switchTarget', { previous: nameOf(status.previous), target: nameOf(status.target) })}
          </p>
        </div>
        {!running && onHide && (
          <button type="button" onClick={onHide} aria-label={t('models.switchHide')} title={t('models.switchHide')} className="rounded-md p-1 text-zinc-500 hover:bg-zinc-100 dark:text-zinc-400 dark:hover:bg-zinc-800">
            <X className="size-4" aria-hidden />
          </button>
        )}
      </div>
      <div role="status" aria-live="polite" className="mt-3 flex flex-wrap items-center gap-x-3 gap-y-1 text-sm">
        <Badge tone={PHASE_TONE[status.phase]} testId="switch-phase">
          {t(`models.phase.${status.phase}`)}
        </Badge>
        {status.message && <span className="min-w-0 break-words">{status.message}</span>}
      </div>
      <p className={`mt-1 text-xs tabular-nums ${MUTED}`} data-testid="switch-elapsed">
        {t('models.switchElapsed', { time: elapsed })}
      </p>
      <ol aria-label={t('models.switchSteps')} className="mt-4 grid grid-cols-2 gap-2 sm:grid-cols-4">
        {steps.map(({ step, state }) => (
          <li
            key={step}
            data-step={step}
            data-state={state}
            aria-current={state === 'current' ? 'step' : undefined}
            className={`flex items-center gap-2 rounded-lg border px-2.5 py-1.5 text-sm ${
              state === 'current'
                ? 'border-sky-300 bg-sky-50 dark:border-sky-800 dark:bg-sky-950'
                : state === 'failed'
                  ? 'border-red-300 bg-red-50 dark:border-red-800 dark:bg-red-950'
                  : 'border-zinc-200 dark:border-zinc-700'
            }`}
          >
            {STEP_ICON[state]}
            <span>{t(`models.phase.${step}`)}</span>
            <span className="sr-only">({t(`models.step.${state}`)})</span>
          </li>
        ))}
      </ol>
      {status.log.length > 0 && (
        <div className="mt-4">
          <h3 id="switch-log-title" className="mb-1 text-sm font-medium">
            {t('models.switchLog')}
          </h3>
          <ol
            aria-labelledby="switch-log-title"
            tabIndex={0}
            className="max-h-48 space-y-0.5 overflow-y-auto rounded-lg bg-zinc-50 p-2 font-mono text-xs dark:bg-zinc-950"
            data-testid="switch-log"
          >
            {status.log.map((line, i) => (
              <li key={`${line.at}-${i}`} className="break-words">
                <time dateTime={line.at} className={`mr-2 ${MUTED}`}>
                  {time(line.at)}
                </time>
                {line.message}
              </li>
            ))}
          </ol>
        </div>
      )}
    </section>
  )
}
