import { useCallback, useEffect, useState } from 'react'
import { api, type Deployment, type FinetuneJob, type FinetuneJobDetail } from '../api'
import { useAuth } from '../stores/auth'
import { useT } from '../i18n'
import { usePolling } from '../lib/polling'
import { PageShell } from '../components/PageShell'
import { errorText } from '../components/admin/parts'
import { JobForm } from '../components/admin/finetune/JobForm'
import { JobsTable } from '../components/admin/finetune/JobsTable'
import { JobDetail } from '../components/admin/finetune/JobDetail'
import { VersionPanel } from '../components/admin/finetune/VersionPanel'
import { SplitPanel } from '../components/admin/finetune/SplitPanel'
import { VersionsTable } from '../components/admin/finetune/VersionsTable'
import { DeploymentsPanel } from '../components/admin/finetune/DeploymentsPanel'

/** Admins: LoRA jobs (start, follow the loss, cancel), the registered versions with their
 * gate verdicts, the evaluation gate, promotion, deployment (and undeploy), rollback and A/B
 * splits of the versions they register. */
export function AdminFinetunePage({ pollMs = 2000 }: { pollMs?: number }) {
  const t = useT()
  const isAdmin = useAuth((s) => s.identity?.role === 'admin')
  const [jobs, setJobs] = useState<FinetuneJob[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [selected, setSelected] = useState<string | null>(null)
  const [versionRef, setVersionRef] = useState('')
  const [deployments, setDeployments] = useState<Deployment[] | null>(null)
  // Bumped when versions may have changed (a job ended, an action in the versions form)
  // and when deployments did (the splits to an undeployed version end).
  const [versionsKey, setVersionsKey] = useState(0)
  const [deploymentsKey, setDeploymentsKey] = useState(0)

  const load = useCallback(async () => {
    try {
      setJobs(await api.finetuneJobs())
      setError(null)
    } catch (err) {
      setError(errorText(err))
    }
  }, [])
  const running = jobs?.some((job) => job.status === 'running') ?? false
  // Once on open, then every pollMs while a job runs (its row's progress and loss move).
  usePolling(load, running ? pollMs : 60_000, isAdmin)

  const onStarted = useCallback((job: FinetuneJobDetail) => {
    setJobs((list) => [job, ...(list ?? []).filter((j) => j.id !== job.id)])
    setSelected(job.id)
  }, [])
  const onChanged = useCallback(() => {
    void load()
    setVersionsKey((n) => n + 1)
  }, [load])
  const loadDeployments = useCallback(async () => {
    try {
      setDeployments(await api.deployments())
    } catch {
      setDeployments([])
    }
  }, [])
  useEffect(() => {
    if (isAdmin) void loadDeployments()
  }, [isAdmin, loadDeployments])
  const onDeploymentsChanged = useCallback(() => {
    void loadDeployments()
    setDeploymentsKey((n) => n + 1)
  }, [loadDeployments])
  const onModelsChanged = useCallback(() => {
    onDeploymentsChanged()
    setVersionsKey((n) => n + 1)
  }, [onDeploymentsChanged])

  if (!isAdmin) {
    return (
      <PageShell title={t('finetune.title')}>
        <p role="alert">{t('admin.forbidden')}</p>
      </PageShell>
    )
  }
  return (
    <PageShell title={t('finetune.title')}>
      <JobForm onStarted={onStarted} />
      {error && <p role="alert" className="text-sm text-red-700 dark:text-red-400">{error}</p>}
      {jobs === null && !error && <p className="text-sm text-zinc-500 dark:text-zinc-400">{t('common.loading')}</p>}
      {jobs && <JobsTable jobs={jobs} selected={selected} onSelect={setSelected} />}
      {selected && <JobDetail key={selected} jobId={selected} pollMs={pollMs} onChanged={onChanged} onUseVersion={setVersionRef} />}
      <VersionsTable refreshKey={versionsKey} onChanged={onDeploymentsChanged} />
      <VersionPanel value={versionRef} onChange={setVersionRef} onChanged={onModelsChanged} />
      <DeploymentsPanel deployments={deployments} onChanged={onDeploymentsChanged} />
      <SplitPanel deployments={deployments ?? []} refreshKey={deploymentsKey} />
    </PageShell>
  )
}
