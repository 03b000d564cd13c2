import { useState } from 'react'
import { RotateCcw } from 'lucide-react'
import { useChat, type Params } from '../stores/chat'
import { findModel, useModels } from '../stores/models'
import { useAuth } from '../stores/auth'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'
import { Modal } from './Modal'

/** The value a turn gets when the user sets nothing: the user's default, else the model's. */
export function effectiveDefault(key: keyof Params, modelDefaults: Record<string, unknown> | undefined, userSettings: Record<string, unknown> | undefined): number | null {
  const user = userSettings?.[key]
  if (typeof user === 'number' && user) return user
  const model = modelDefaults?.[key]
  return typeof model === 'number' ? model : null
}

export function ModelSelect({ id, className, autoFocus }: { id: string; className?: string; autoFocus?: boolean }) {
  const t = useT()
  const models = useModels((s) => s.models)
  const defaultModel = useModels((s) => s.defaultModel)
  const profile = useAuth((s) => s.profile)
  const model = useChat((s) => s.model)
  const setModel = useChat((s) => s.setModel)
  const current = model ?? profile?.settings.default_model ?? defaultModel ?? ''
  const known = findModel(models, current)
  return (
    <select id={id} data-autofocus={autoFocus ? '' : undefined} value={known?.id ?? current} onChange={(e) => setModel(e.target.value || null)} className={className}>
      {!known && current && <option value={current}>{current}</option>}
      {models.map((m) => (
        <option key={m.id} value={m.id}>
          {m.healthy ? m.name || m.id : t('chat.modelUnhealthy', { name: m.name || m.id })}
        </option>
      ))}
    </select>
  )
}

function Slider({
  id,
  label,
  min,
  max,
  step,
  value,
  fallback,
  onChange,
}: {
  id: string
  label: string
  min: number
  max: number
  step: number
  value: number | null
  fallback: number | null
  onChange: (value: number) => void
}) {
  const t = useT()
  const shown = value ?? fallback ?? max / 2
  return (
    <div>
      <div className="mb-1 flex items-center justify-between">
        <label htmlFor={id} className="text-sm font-medium text-zinc-700 dark:text-zinc-200">
          {label}
        </label>
        <span className="font-mono text-xs text-zinc-600 dark:text-zinc-300">
          {value !== null ? value.toFixed(2) : `${t('chat.unset')}${fallback !== null ? ` (${fallback})` : ''}`}
        </span>
      </div>
      <input id={id} type="range" min={min} max={max} step={step} value={shown} onChange={(e) => onChange(Number(e.target.value))} className="w-full accent-accent-600" />
    </div>
  )
}

export function ChatOptions({ onClose }: { onClose: () => void }) {
  const t = useT()
  const models = useModels((s) => s.models)
  const defaultModel = useModels((s) => s.defaultModel)
  const profile = useAuth((s) => s.profile)
  const { model, params, setParams, resetParams, systemPrompt, saveSystemPrompt, conversationId } = useChat()
  const notify = useUi((s) => s.notify)
  const [draft, setDraft] = useState(systemPrompt)
  const info = findModel(models, model ?? profile?.settings.default_model ?? defaultModel)
  const settings = profile?.settings as Record<string, unknown> | undefined
  const fallback = (key: keyof Params) => effectiveDefault(key, info?.default_params, settings)

  async function onSave() {
    try {
      await saveSystemPrompt(draft)
      if (conversationId) notify(t('chat.systemPromptSaved'))
      onClose()
    } catch (error) {
      notify(error instanceof Error ? error.message : String(error), 'error')
    }
  }

  return (
    <Modal title={t('chat.options')} onClose={onClose}>
      <div className="space-y-5">
        <div>
          <label htmlFor="options-model" className="label">
            {t('chat.model')}
          </label>
          <ModelSelect id="options-model" className="input" autoFocus />
        </div>
        <Slider id="options-temperature" label={t('chat.temperature')} min={0} max={2} step={0.05} value={params.temperature} fallback={fallback('temperature')} onChange={(v) => setParams({ temperature: v })} />
        <Slider id="options-top-p" label={t('chat.topP')} min={0.05} max={1} step={0.05} value={params.top_p} fallback={fallback('top_p')} onChange={(v) => setParams({ top_p: v })} />
        <div>
          <label htmlFor="options-max-tokens" className="label">
            {t('chat.maxTokens')}
          </label>
          <input
            id="options-max-tokens"
            type="number"
            min={1}
            step={1}
            inputMode="numeric"
            value={params.max_tokens ?? ''}
            placeholder={fallback('max_tokens')?.toString() ?? t('chat.unset')}
            onChange={(e) => {
              const n = Number.parseInt(e.target.value, 10)
              setParams({ max_tokens: Number.isFinite(n) && n > 0 ? n : null })
            }}
            className="input"
          />
        </div>
        <button type="button" onClick={resetParams} className="inline-flex items-center gap-1.5 text-sm text-zinc-600 hover:text-zinc-900 dark:text-zinc-300 dark:hover:text-white">
          <RotateCcw className="size-4" aria-hidden />
          {t('chat.resetParams')}
        </button>
        <div>
          <label htmlFor="options-system-prompt" className="label">
            {t('chat.systemPrompt')}
          </label>
          <p id="options-system-prompt-help" className="mb-1.5 text-xs text-zinc-500 dark:text-zinc-400">
            {t('chat.systemPromptHelp')}
          </p>
          <textarea
            id="options-system-prompt"
            aria-describedby="options-system-prompt-help"
            rows={5}
            value={draft}
            placeholder={profile?.settings.system_prompt ?? ''}
            onChange={(e) => setDraft(e.target.value)}
            className="input resize-y"
          />
        </div>
        <div className="flex justify-end gap-2">
          <button type="button" onClick={onClose} className="btn-secondary">
            {t('common.close')}
          </button>
          <button type="button" onClick={onSave} className="btn-primary">
            {t('common.save')}
          </button>
        </div>
      </div>
    </Modal>
  )
}
