import { useState } from 'react'
import { ApiError, api, type Deployment, type GateVerdict } from '../../../api'
import { useUi } from '../../../stores/ui'
import { useT } from '../../../i18n'
import { ConfirmDialog } from '../../Modal'
import { errorText } from '../parts'
import { useFt } from './messages'

export type VersionAction = 'evaluate' | 'promote' | 'deploy' | 'rollback' | 'rollbackToBase' | 'undeploy'

/** What is running: the action and what it acts on (NAME@VERSION, a model id, BASE:NAME). */
export interface Busy {
  action: VersionAction
  target: string
}

export interface VersionActions {
  busy: Busy | null
  error: string | null
  evaluate: (name: string, version: string) => Promise<GateVerdict | undefined>
  /** `failed`: the gate is known to have failed here, so the force confirm comes first. */
  promote: (name: string, version: string, failed?: boolean) => Promise<void>
  deploy: (spec: string) => Promise<void>
  rollback: (name: string) => Promise<void>
  rollbackToBase: (name: string) => Promise<void>
  undeploy: (modelId: string) => Promise<Deployment[] | undefined>
  /** The forced-promotion confirm, while one is asked. */
  confirm: React.ReactNode
}

/** The actions on registered versions and deployments, one at a time per caller, with the
 * error of the last one and the confirm a promotion past a failed gate needs (the server
 * answers 409 gate_failed where this page did not know). `onChanged` runs after each success. */
export function useVersionActions(onChanged?: () => void): VersionActions {
  const t = useT()
  const ft = useFt()
  const notify = useUi((s) => s.notify)
  const [busy, setBusy] = useState<Busy | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [forcing, setForcing] = useState<[string, string] | null>(null)

  async function run<T>(action: VersionAction, target: string, task: () => Promise<T>): Promise<T | undefined> {
    setBusy({ action, target })
    setError(null)
    try {
      const result = await task()
      onChanged?.()
      return result
    } catch (err) {
      setError(errorText(err))
      return undefined
    } finally {
      setBusy(null)
    }
  }

  async function promote(name: string, version: string, failed = false, force = false): Promise<void> {
    if (failed && !force) return setForcing([name, version])
    await run('promote', `${name}@${version}`, async () => {
      try {
        const done = await api.promoteVersion(name, version, force)
        notify(t('finetune.promoted', { ref: `${done.model}@${done.version}` }))
      } catch (err) {
        if (force || !(err instanceof ApiError) || err.code !== 'gate_failed') throw err
        setForcing([name, version])
      }
    })
  }

  const confirm = forcing && (
    <ConfirmDialog
      title={t('finetune.forceTitle')}
      message={t('finetune.forceMessage', { ref: forcing.join('@') })}
      confirmLabel={t('finetune.forcePromote')}
      onCancel={() => setForcing(null)}
      onConfirm={() => {
        setForcing(null)
        void promote(forcing[0], forcing[1], true, true)
      }}
    />
  )

  return {
    busy,
    error,
    confirm,
    promote: (name, version, failed) => promote(name, version, failed),
    evaluate: (name, version) => run('evaluate', `${name}@${version}`, () => api.evaluateVersion(name, version)),
    deploy: (spec) =>
      run('deploy', spec, async () => {
        notify(t('finetune.deployed', { id: (await api.deployModel(spec)).model_id }))
      }).then(() => undefined),
    rollback: (name) =>
      run('rollback', name, async () => {
        notify(t('finetune.rolledBack', { id: (await api.rollbackModel(name)).model_id }))
      }).then(() => undefined),
    rollbackToBase: (name) =>
      run('rollbackToBase', name, async () => {
        await api.rollbackToBase(name)
        notify(ft('rolledBackToBase', { name }))
      }).then(() => undefined),
    undeploy: (modelId) =>
      run('undeploy', modelId, async () => {
        const left = await api.undeployModel(modelId)
        notify(ft('undeployed', { id: modelId }))
        return left
      }),
  }
}
