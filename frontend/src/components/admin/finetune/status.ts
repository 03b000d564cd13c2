import type { FinetuneJob, FinetuneStatus } from '../../../api'
import type { Tone } from '../../../lib/admin'

export const JOB_TONE: Record<FinetuneStatus, Tone> = {
  running: 'info',
  succeeded: 'good',
  failed: 'bad',
  cancelled: 'neutral',
  interrupted: 'warn',
}

/** Percent done (null while the total is unknown). */
export function jobProgress(job: Pick<FinetuneJob, 'step' | 'total_steps' | 'status'>): number | null {
  if (job.status === 'succeeded') return 100
  if (!job.total_steps) return null
  return Math.min(100, Math.round((job.step / job.total_steps) * 100))
}

/** The registered version a finished job produced, as NAME@VERSION (null: none). */
export function versionRef(job: Pick<FinetuneJob, 'model_name' | 'model_version'>): string | null {
  return job.model_name && job.model_version ? `${job.model_name}@${job.model_version}` : null
}
