import { useCallback, useEffect, useRef, useState } from 'react'
import { ArrowRightLeft, RefreshCw } from 'lucide-react'
import { ApiError, api, type AdminModel, type AdminModelList, type EngineInfo, type PoolInfo, type SwitchStatus } from '../api'
import { useAuth } from '../stores/auth'
import { useModels } from '../stores/models'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'
import { usePolling } from '../lib/polling'
import { STATUS_TONE, SWITCH_STEPS, formatParams, gib, isSwitchRunning, modelStatus, type SwitchStep } from '../lib/admin'
import { PageShell } from '../components/PageShell'
import { ConfirmDialog } from '../components/Modal'
import { VerdictView, verdictLabel } from '../components/Verdict'
import { errorText, Badge, MUTED, Fact } from '../components/admin/parts'
import { SwitchPanel } from '../components/admin/SwitchPanel'
import { EnginesSection } from '../components/admin/EnginesSection'
import { CheckForm } from '../components/admin/CheckForm'
import { DatasetPanel } from '../components/admin/DatasetPanel'

function Overview({ list }: { list: AdminModelList }) {
  const t = useT()
  const hw = list.hardware
  const names = [...new Set(hw.names)].join(', ')
  return (
    <section aria-labelledby="models-overview-title" className="card">
      <h2 id="models-overview-title" className="sr-only">
        {t('models.overview')}
      </h2>
      <dl className="grid gap-x-6 gap-y-3 text-sm sm:grid-cols-3">
        <Fact label={t('models.hardware')}>
          {hw.detected && hw.gpus > 0 ? (
            <span data-testid="hardware-summary">
              {t('models.gpus', { count: hw.gpus, memory: gib(hw.gpu_memory_bytes, 0) })}
              {names && <span className={`block text-xs ${MUTED}`}>{names}</span>}
            </span>
          ) : (
            <span data-testid="hardware-summary">{t('models.noGpu')}</span>
          )}
        </Fact>
        <Fact label={t('models.activeProfile')}>
          <span className="font-mono text-xs">{list.active_profile ?? t('models.none')}</span>
        </Fact>
        <Fact label={t('models.default')}>
          <span className="font-mono text-xs">{list.default_model ?? t('models.none')}</span>
        </Fact>
      </dl>
      {!list.can_switch && (
        <p className="mt-4 rounded-lg bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-200" data-testid="switch-unavailable">
          {t('models.switchUnavailable', { reason: list.switch_unavailable_reason ?? '–' })}
        </p>
      )}
    </section>
  )
}

function EnabledToggle({ model, disabled, onToggle }: { model: AdminModel; disabled: boolean; onToggle: () => void }) {
  const t = useT()
  return (
    <span className="inline-flex items-center gap-2 text-xs">
      <span aria-hidden className={MUTED}>
        {t('models.enabled')}
      </span>
      <button
        type="button"
        role="switch"
        aria-checked={model.enabled}
        aria-label={t('models.enabledLabel', { name: model.name || model.id })}
        disabled={disabled}
        onClick={onToggle}
        className={`relative inline-flex h-6 w-11 shrink-0 items-center rounded-full transition-colors motion-reduce:transition-none disabled:cursor-not-allowed disabled:opacity-50 ${
          model.enabled ? 'bg-accent-700' : 'bg-zinc-400 dark:bg-zinc-600'
        }`}
      >
        <span
          aria-hidden
          className={`inline-block size-5 rounded-full bg-white shadow transition-transform motion-reduce:transition-none ${model.enabled ? 'translate-x-5' : 'translate-x-0.5'}`}
        />
      </button>
    </span>
  )
}

function ModelCard({
  model,
  isDefault,
  canSwitch,
  busy,
  toggling,
  onToggle,
  onSwitch,
}: {
  model: AdminModel
  isDefault: boolean
  canSwitch: boolean
  busy: boolean
  toggling: boolean
  onToggle: () => void
  onSwitch: () => void
}) {
  const t = useT()
  const status = modelStatus(model)
  const name = model.name || model.id
  const precision = [model.dtype, model.quantization].filter(Boolean).join(' · ')
  return (
    <li className="card" data-model={model.id} data-status={status}>
      <div className="flex flex-wrap items-start justify-between gap-x-3 gap-y-2">
        <div className="min-w-[min(100%,14rem)] flex-1">
          <h3 className="flex flex-wrap items-center gap-2 break-words text-base font-semibold">
            {name}
            {isDefault && <span className="rounded bg-zinc-100 px-1.5 py-0.5 text-xs font-medium text-zinc-700 dark:bg-zinc-800 dark:text-zinc-200">{t('common.default')}</span>}
          </h3>
          <p className={`break-all font-mono text-xs ${MUTED}`}>{model.id}</p>
        </div>
        <div className="flex items-center gap-3">
          <Badge tone={STATUS_TONE[status]} testId="model-status">
            {t(`models.status.${status}`)}
          </Badge>
          <EnabledToggle model={model} disabled={busy || toggling} onToggle={onToggle} />
        </div>
      </div>
      {model.description && <p className="mt-2 text-sm text-zinc-600 dark:text-zinc-300">{model.description}</p>}
      <dl className="mt-3 grid grid-cols-2 gap-x-4 gap-y-2 text-sm sm:grid-cols-4">
        <Fact label={t('models.engine')}>{model.engine ?? '–'}</Fact>
        <Fact label={t('models.size')}>{formatParams(model.params_b)}</Fact>
        <Fact label={t('models.precision')}>{precision || '–'}</Fact>
        <Fact label={t('models.context')}>{model.context_length ? model.context_length.toLocaleString() : '–'}</Fact>
      </dl>
      {(model.source || model.aliases.length > 0) && (
        <dl className="mt-2 space-y-0.5 text-xs">
          {model.source && (
            <div className="flex gap-1.5">
              <dt className={MUTED}>{t('models.source')}:</dt>
              <dd className="min-w-0 break-all font-mono">{model.source}</dd>
            </div>
          )}
          {model.aliases.length > 0 && (
            <div className="flex gap-1.5">
              <dt className={MUTED}>{t('models.aliases')}:</dt>
              <dd className="min-w-0 break-all font-mono">{model.aliases.join(', ')}</dd>
            </div>
          )}
        </dl>
      )}
      <div className="mt-3">{model.verdict ? <VerdictView report={model.verdict} /> : <p className={`text-xs ${MUTED}`}>{t('models.noVerdict')}</p>}</div>
      {model.has_profile && (
        <div className="mt-3 flex justify-end">
          <button
            type="button"
            onClick={onSwitch}
            disabled={busy || !canSwitch || model.active}
            aria-label={t('models.switchTo', { name })}
            className="btn-secondary py-1.5"
          >
            <ArrowRightLeft className="size-4" aria-hidden />
            {t('models.switch')}
          </button>
        </div>
      )}
    </li>
  )
}

function switchStepOf(status: SwitchStatus | null): SwitchStep | null {
  if (!status || status.phase === 'ready') return null
  return (SWITCH_STEPS as readonly string[]).includes(status.phase) ? (status.phase as SwitchStep) : null
}

/** Model management: profiles with status and hardware fit, switching, live engines. */
export function AdminModelsPage({ switchPollMs = 1000, enginesPollMs = 5000 }: { switchPollMs?: number; enginesPollMs?: number }) {
  const t = useT()
  const isAdmin = useAuth((s) => s.identity?.role === 'admin')
  const notify = useUi((s) => s.notify)
  const [list, setList] = useState<AdminModelList | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [engines, setEngines] = useState<EngineInfo[] | null>(null)
  const [pools, setPools] = useState<PoolInfo[]>([])
  const [enginesError, setEnginesError] = useState<string | null>(null)
  const [switching, setSwitching] = useState<SwitchStatus | null>(null)
  const [hidden, setHidden] = useState<string | null>(null)
  const [reached, setReached] = useState<{ id: string; step: SwitchStep } | null>(null)
  const [now, setNow] = useState(() => Date.now())
  const [confirming, setConfirming] = useState<AdminModel | null>(null)
  const [toggling, setToggling] = useState<string | null>(null)
  const [starting, setStarting] = useState(false)
  const lastPhase = useRef<string | null>(null)

  const loadModels = useCallback(async () => {
    try {
      setList(await api.adminModels())
      setError(null)
    } catch (err) {
      setError(errorText(err))
    }
  }, [])

  const loadEngines = useCallback(async () => {
    try {
      const list = await api.engines()
      setEngines(list.engines)
      setPools(list.pools)
      setEnginesError(null)
    } catch (err) {
      setEnginesError(errorText(err))
    }
  }, [])

  const track = useCallback((status: SwitchStatus | null) => {
    const step = switchStepOf(status)
    if (status && step) setReached({ id: status.id, step })
    setSwitching(status)
    setNow(Date.now())
  }, [])

  useEffect(() => {
    if (!isAdmin) return
    void loadModels()
    api.switchStatus().then(
      (status) => {
        lastPhase.current = status?.phase ?? null
        track(status)
      },
      () => undefined,
    )
  }, [isAdmin, loadModels, track])

  usePolling(loadEngines, enginesPollMs, isAdmin)

  const running = isSwitchRunning(switching)
  const nameOf = useCallback(
    (id: string | null) => (id === null ? t('models.none') : (list?.models.find((m) => m.id === id)?.name ?? id)),
    [list, t],
  )

  usePolling(
    async () => {
      let status: SwitchStatus | null
      try {
        status = await api.switchStatus()
      } catch {
        return // a blip: the next poll tries again
      }
      const previous = lastPhase.current
      lastPhase.current = status?.phase ?? null
      track(status)
      if (!isSwitchRunning(status)) {
        void loadModels()
        void loadEngines()
        void useModels.getState().load()
        if (status?.phase === 'ready') notify(t('models.switchDone', { name: nameOf(status.target) }))
        else if (status) notify(t('models.switchFailed', { name: nameOf(status.target) }), 'error')
      } else if (status && status.phase !== previous) {
        void loadModels()
      }
    },
    switchPollMs,
    isAdmin && running,
  )

  async function startSwitch(model: AdminModel) {
    setConfirming(null)
    setStarting(true)
    try {
      const status = await api.switchModel(model.id)
      lastPhase.current = status.phase
      setHidden(null)
      track(status)
      notify(t('models.switchStarted', { name: model.name || model.id }))
    } catch (err) {
      notify(errorText(err), 'error')
      if (err instanceof ApiError && err.code === 'switch_in_progress') {
        api.switchStatus().then(track, () => undefined)
      }
    } finally {
      setStarting(false)
    }
  }

  async function toggle(model: AdminModel) {
    setToggling(model.id)
    try {
      const updated = await api.setModelEnabled(model.id, !model.enabled)
      setList((current) => current && { ...current, models: current.models.map((m) => (m.id === updated.id ? updated : m)) })
      notify(t(updated.enabled ? 'models.enabledOn' : 'models.enabledOff', { name: updated.name || updated.id }))
      void useModels.getState().load()
    } catch (err) {
      notify(errorText(err), 'error')
    } finally {
      setToggling(null)
    }
  }

  if (!isAdmin) {
    return (
      <PageShell title={t('models.title')}>
        <p role="alert">{t('admin.forbidden')}</p>
      </PageShell>
    )
  }

  const busy = running || starting
  const drainSeconds = list?.drain_seconds ?? switching?.drain_seconds ?? null
  const profiles = list?.models.filter((m) => m.has_profile) ?? []

  return (
    <PageShell
      title={t('models.title')}
      actions={
        <button
          type="button"
          onClick={() => {
            void loadModels()
            void loadEngines()
          }}
          className="btn-secondary py-1.5"
        >
          <RefreshCw className="size-4" aria-hidden />
          {t('models.refresh')}
        </button>
      }
    >
      {error && (
        <p role="alert" className="text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      )}
      {!list && !error && <p className={`text-sm ${MUTED}`}>{t('common.loading')}</p>}
      {list && <Overview list={list} />}
      {switching && hidden !== switching.id && (
        <SwitchPanel
          status={switching}
          reached={reached?.id === switching.id ? reached.step : null}
          now={now}
          nameOf={nameOf}
          onHide={() => setHidden(switching.id)}
        />
      )}
      {list && (
        <section aria-labelledby="profiles-title" className="space-y-3">
          <div>
            <h2 id="profiles-title" className="text-base font-semibold">
              {t('models.profiles')}
            </h2>
            <p className={`break-keep text-sm ${MUTED}`}>{t('models.profilesHelp')}</p>
          </div>
          {list.models.length === 0 && <p className={`text-sm ${MUTED}`}>{t('models.empty')}</p>}
          <ul className="space-y-4">
            {list.models.map((model) => (
              <ModelCard
                key={model.id}
                model={model}
                isDefault={model.id === list.default_model}
                canSwitch={list.can_switch}
                busy={busy}
                toggling={toggling === model.id}
                onToggle={() => void toggle(model)}
                onSwitch={() => setConfirming(model)}
              />
            ))}
          </ul>
        </section>
      )}
      <EnginesSection engines={engines} pools={pools} error={enginesError} />
      {list && profiles.length > 0 && <CheckForm models={profiles} />}
      <DatasetPanel />
      {confirming && (
        <ConfirmDialog
          title={t('models.switchConfirmTitle', { name: confirming.name || confirming.id })}
          message={[
            drainSeconds !== null ? t('models.switchConfirm', { seconds: Math.round(drainSeconds) }) : t('models.switchConfirmNoDrain'),
            confirming.verdict && (confirming.verdict.verdict === 'does_not_fit' || confirming.verdict.verdict === 'no_gpu')
              ? t('models.switchWarning', { verdict: verdictLabel(t, confirming.verdict) })
              : '',
          ]
            .filter(Boolean)
            .join(' ')}
          confirmLabel={t('models.switch')}
          onConfirm={() => void startSwitch(confirming)}
          onCancel={() => setConfirming(null)}
        />
      )}
    </PageShell>
  )
}
