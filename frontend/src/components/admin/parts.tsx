// Small pieces the admin model views share: badges, labelled facts, error text.
import { TONE_CLASS, TONE_DOT, type Tone } from '../../lib/admin'

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export function Badge({ tone, children, testId }: { tone: Tone; children: React.ReactNode; testId?: string }) {
  return (
    <span data-testid={testId} className={`inline-flex shrink-0 items-center gap-1.5 rounded-full px-2 py-0.5 text-xs font-medium ${TONE_CLASS[tone]}`}>
      <span className={`size-1.5 rounded-full ${TONE_DOT[tone]}`} aria-hidden />
      {children}
    </span>
  )
}

export const MUTED = 'text-zinc-500 dark:text-zinc-400'

export function Fact({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div className="min-w-0">
      <dt className={`text-xs ${MUTED}`}>{label}</dt>
      <dd className="break-words">{children}</dd>
    </div>
  )
}
