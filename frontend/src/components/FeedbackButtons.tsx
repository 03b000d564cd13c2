import { useEffect, useState } from 'react'
import { PenLine, ThumbsDown, ThumbsUp } from 'lucide-react'
import type { Message, Rating } from '../api/types'
import { useChat } from '../stores/chat'
import { useFeedback } from '../stores/feedback'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'
import { Modal } from './Modal'

const BUTTON =
  'rounded-md p-1.5 text-zinc-500 hover:bg-zinc-100 hover:text-zinc-900 disabled:opacity-40 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100'
const PRESSED = 'text-accent-700 dark:text-accent-500'

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function CorrectionDialog({ initial, answer, onSave, onClose }: { initial: string; answer: string; onSave: (text: string) => Promise<void>; onClose: () => void }) {
  const t = useT()
  const [text, setText] = useState(initial || answer)
  const [busy, setBusy] = useState(false)
  return (
    <Modal title={t('feedback.correctTitle')} onClose={onClose} wide>
      <form
        onSubmit={async (event) => {
          event.preventDefault()
          setBusy(true)
          try {
            await onSave(text)
            onClose()
          } catch {
            // Already shown as a toast; the dialog stays open with the text.
          } finally {
            setBusy(false)
          }
        }}
        className="space-y-3"
      >
        <p className="text-sm text-zinc-500 dark:text-zinc-400">{t('feedback.correctHelp')}</p>
        <label htmlFor="feedback-correction" className="label">
          {t('feedback.correction')}
        </label>
        <textarea id="feedback-correction" data-autofocus rows={8} value={text} onChange={(e) => setText(e.target.value)} className="input resize-y" />
        <div className="flex justify-end gap-2">
          <button type="button" onClick={onClose} className="btn-secondary">
            {t('common.cancel')}
          </button>
          <button type="submit" disabled={busy || !text.trim()} className="btn-primary">
            {t('feedback.saveCorrection')}
          </button>
        </div>
      </form>
    </Modal>
  )
}

/** Thumbs up/down on an answer, and a corrected answer (sent as a thumbs-down unless rated up). */
export function FeedbackButtons({ message }: { message: Message }) {
  const t = useT()
  const notify = useUi((s) => s.notify)
  const conversationId = useChat((s) => s.conversationId)
  const current = useFeedback((s) => s.byMessage[message.id])
  const [correcting, setCorrecting] = useState(false)
  const [busy, setBusy] = useState(false)

  useEffect(() => {
    if (conversationId) void useFeedback.getState().ensure(conversationId)
  }, [conversationId])

  if (!conversationId || message.id <= 0) return null
  const id = conversationId

  async function run(action: () => Promise<void>) {
    setBusy(true)
    try {
      await action()
    } catch (error) {
      notify(errorText(error), 'error')
      throw error
    } finally {
      setBusy(false)
    }
  }

  function onThumb(rating: Rating) {
    const store = useFeedback.getState()
    const action =
      current?.rating === rating && !current.correction
        ? () => store.withdraw(id, message.id)
        : () => store.rate(id, message.id, rating, current?.correction ?? null)
    void run(action).catch(() => undefined)
  }

  return (
    <>
      <button type="button" aria-pressed={current?.rating === 'up'} aria-label={t('feedback.good')} title={t('feedback.good')} disabled={busy} onClick={() => onThumb('up')} className={`${BUTTON} ${current?.rating === 'up' ? PRESSED : ''}`}>
        <ThumbsUp className="size-4" aria-hidden fill={current?.rating === 'up' ? 'currentColor' : 'none'} />
      </button>
      <button type="button" aria-pressed={current?.rating === 'down'} aria-label={t('feedback.bad')} title={t('feedback.bad')} disabled={busy} onClick={() => onThumb('down')} className={`${BUTTON} ${current?.rating === 'down' ? PRESSED : ''}`}>
        <ThumbsDown className="size-4" aria-hidden fill={current?.rating === 'down' ? 'currentColor' : 'none'} />
      </button>
      <button type="button" aria-label={current?.correction ? t('feedback.editCorrection') : t('feedback.correct')} title={current?.correction ? t('feedback.editCorrection') : t('feedback.correct')} disabled={busy} onClick={() => setCorrecting(true)} className={`${BUTTON} ${current?.correction ? PRESSED : ''}`}>
        <PenLine className="size-4" aria-hidden />
      </button>
      {correcting && (
        <CorrectionDialog
          initial={current?.correction ?? ''}
          answer={message.content}
          onClose={() => setCorrecting(false)}
          onSave={(text) => run(() => useFeedback.getState().rate(id, message.id, current?.rating ?? 'down', text))}
        />
      )}
    </>
  )
}
