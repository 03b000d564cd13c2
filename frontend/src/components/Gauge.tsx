import { gaugeClass, percent } from '../lib/admin'

/**
 * A labelled horizontal gauge (role="meter"). With no value it shows `text` (e.g. "n/a") and an
 * empty track that assistive technology skips.
 */
export function Gauge({
  label,
  ariaLabel,
  value,
  max = 100,
  text,
  warnAt,
  badAt,
  testId,
}: {
  label: string
  ariaLabel: string
  value: number | null
  max?: number | null
  text: string
  warnAt?: number
  badAt?: number
  testId?: string
}) {
  const pct = percent(value, max)
  return (
    <div data-testid={testId}>
      <div className="mb-1 flex items-baseline justify-between gap-2 text-sm">
        <span className="text-zinc-600 dark:text-zinc-300">{label}</span>
        <span className="font-medium tabular-nums" data-gauge-text>
          {text}
        </span>
      </div>
      {pct === null || value === null ? (
        <div className="h-2 rounded-full bg-zinc-200 dark:bg-zinc-700" aria-hidden />
      ) : (
        <div
          role="meter"
          aria-label={ariaLabel}
          aria-valuemin={0}
          aria-valuemax={max ?? 100}
          aria-valuenow={value}
          aria-valuetext={text}
          className="h-2 overflow-hidden rounded-full bg-zinc-200 dark:bg-zinc-700"
        >
          <div className={`h-full rounded-full transition-[width] motion-reduce:transition-none ${gaugeClass(pct, warnAt, badAt)}`} style={{ width: `${pct}%` }} />
        </div>
      )}
    </div>
  )
}
