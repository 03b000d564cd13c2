import { useCallback, useEffect, useState } from 'react'
import { Rocket, Undo2 } from 'lucide-react'
import { api, type RegisteredModel, type RegisteredVersion } from '../../../api'
import { useT } from '../../../i18n'
import { useUi } from '../../../stores/ui'
import { formatDate } from '../../../lib/urls'
import type { Tone } from '../../../lib/admin'
import { Badge, MUTED, errorText } from '../parts'
import { useVersionActions, type VersionActions } from './actions'
import { EvalScoresView, GateBadge } from './EvalScores'
import { useFt } from './messages'

const ALIAS_TONE: Record<string, Tone> = { champion: 'good', challenger: 'info', previous_champion: 'neutral' }

function VersionRow({ model, version, actions }: { model: RegisteredModel; version: RegisteredVersion; actions: VersionActions }) {
  const t = useT()
  const ft = useFt()
  const language = useUi((s) => s.language)
  const evaluation = version.evaluation
  const number = String(version.version)
  const deploySpec = version.model_id ?? version.ref
  const busyHere = actions.busy !== null && [version.ref, deploySpec].includes(actions.busy.target)
  const idle = actions.busy === null
  // The row's ref completes each button's name ("Evaluate smollm2-135m-zanthia@2").
  const evaluateLabel = busyHere && actions.busy?.action === 'evaluate' ? t('finetune.evaluating') : t('finetune.evaluate')
  const deployLabel = busyHere && actions.busy?.action === 'deploy' ? t('finetune.deploying') : t('finetune.deploy')
  return (
    <tr data-version={version.ref}>
      <th scope="row" className="px-3 py-2 text-left font-mono font-normal">{version.version}</th>
      <td className="px-3 py-2">
        <span className="flex flex-wrap gap-1">
          {version.aliases.length === 0 ? '–' : version.aliases.map((alias) => <Badge key={alias} tone={ALIAS_TONE[alias] ?? 'neutral'}>{alias}</Badge>)}
        </span>
      </td>
      <td className="px-3 py-2">
        <GateBadge evaluation={evaluation} forced={version.forced_by !== null} />
        {evaluation && evaluation.reasons.length > 0 && (
          <details className="mt-1 text-xs">
            <summary className="cursor-pointer">{ft('reasons', { count: evaluation.reasons.length })}</summary>
            <ul className="list-disc pl-4">
              {evaluation.reasons.map((reason) => <li key={reason} className="break-words">{reason}</li>)}
            </ul>
          </details>
        )}
      </td>
      <td className="px-3 py-2">{evaluation ? <EvalScoresView scores={evaluation.candidate} base={evaluation.base} /> : '–'}</td>
      <td className={`px-3 py-2 text-xs ${MUTED}`}>{formatDate(version.created_at, language) || '–'}</td>
      <td className="px-3 py-2">
        <div className="flex flex-wrap gap-1">
          <button type="button" className="btn-secondary py-1" disabled={!idle} aria-label={`${evaluateLabel} ${version.ref}`} onClick={() => void actions.evaluate(model.name, number)}>
            {evaluateLabel}
          </button>
          <button type="button" className="btn-secondary py-1" disabled={!idle} aria-label={`${t('finetune.promote')} ${version.ref}`} onClick={() => void actions.promote(model.name, number, evaluation?.gate === 'failed')}>
            {t('finetune.promote')}
          </button>
          <button type="button" className="btn-primary py-1" disabled={!idle || !version.deployable} aria-label={`${deployLabel} ${deploySpec}`} onClick={() => void actions.deploy(deploySpec)}>
            <Rocket className="size-4" aria-hidden />
            {deployLabel}
          </button>
        </div>
      </td>
    </tr>
  )
}

function ModelVersions({ model, actions }: { model: RegisteredModel; actions: VersionActions }) {
  const t = useT()
  const ft = useFt()
  const title = model.model ?? model.name
  return (
    <div className="space-y-2" data-model={model.name}>
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h3 className="font-mono text-sm font-semibold">{title}</h3>
        {model.model && (
          <button type="button" className="btn-secondary py-1" disabled={actions.busy !== null} aria-label={`${ft('rollbackToBase')} ${model.model}`} onClick={() => void actions.rollbackToBase(model.model ?? '')}>
            <Undo2 className="size-4" aria-hidden />
            {ft('rollbackToBase')}
          </button>
        )}
      </div>
      <div className="overflow-x-auto" tabIndex={0} role="region" aria-label={ft('versionsOf', { name: title })}>
        <table className="w-full text-left text-sm">
          <thead className={`text-xs uppercase ${MUTED}`}>
            <tr>
              <th scope="col" className="px-3 py-2 font-medium">{t('finetune.version')}</th>
              <th scope="col" className="px-3 py-2 font-medium">{ft('aliases')}</th>
              <th scope="col" className="px-3 py-2 font-medium">{ft('gate')}</th>
              <th scope="col" className="px-3 py-2 font-medium">{t('finetune.scores')}</th>
              <th scope="col" className="px-3 py-2 font-medium">{ft('created')}</th>
              <th scope="col" className="px-3 py-2 font-medium">{ft('actions')}</th>
            </tr>
          </thead>
          <tbody className="divide-y divide-zinc-200 dark:divide-zinc-800">
            {model.versions.map((version) => <VersionRow key={version.version} model={model} version={version} actions={actions} />)}
          </tbody>
        </table>
      </div>
    </div>
  )
}

/** Every registered fine-tune with its versions (newest first): aliases, the gate's latest
 * verdict and scores, and evaluate / promote / deploy per version, roll back to the base
 * model per fine-tune. Reloads after its own actions and when `refreshKey` changes;
 * `onChanged` tells the page that deployments may have changed. */
export function VersionsTable({ refreshKey, onChanged }: { refreshKey: number; onChanged: () => void }) {
  const t = useT()
  const ft = useFt()
  const [models, setModels] = useState<RegisteredModel[] | null>(null)
  const [loadError, setLoadError] = useState<string | null>(null)
  const [reloads, setReloads] = useState(0)
  const changed = useCallback(() => {
    setReloads((n) => n + 1)
    onChanged()
  }, [onChanged])
  const actions = useVersionActions(changed)

  useEffect(() => {
    let live = true
    api.registeredVersions().then(
      (found) => {
        if (!live) return
        setModels(found)
        setLoadError(null)
      },
      (err: unknown) => {
        if (live) setLoadError(errorText(err))
      },
    )
    return () => {
      live = false
    }
  }, [refreshKey, reloads])

  return (
    <section aria-labelledby="finetune-registered-title" className="card space-y-3" data-testid="registered-versions">
      <h2 id="finetune-registered-title" className="text-base font-semibold">{ft('registered')}</h2>
      <p className={`text-sm ${MUTED}`}>{ft('registeredHelp')}</p>
      {loadError && <p role="alert" className="break-words text-sm text-red-700 dark:text-red-400" data-testid="versions-error">{loadError}</p>}
      {models === null && !loadError && <p className={`text-sm ${MUTED}`}>{t('common.loading')}</p>}
      {models?.length === 0 && <p className={`text-sm ${MUTED}`} data-testid="no-versions">{ft('noVersions')}</p>}
      {models?.map((model) => <ModelVersions key={model.name} model={model} actions={actions} />)}
      {actions.error && <p role="alert" className="break-words text-sm text-red-700 dark:text-red-400">{actions.error}</p>}
      {actions.confirm}
    </section>
  )
}
