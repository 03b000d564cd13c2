import { memo, useEffect, useRef, useState } from 'react'
import { AlertTriangle, Bot, Check, ChevronLeft, ChevronRight, Copy, Pencil, RefreshCw, Square } from 'lucide-react'
import type { Message } from '../api/types'
import type { Siblings } from '../lib/tree'
import { copyText } from '../lib/clipboard'
import { useT } from '../i18n'
import { Markdown } from './Markdown'
import { FeedbackButtons } from './FeedbackButtons'

export interface MessageViewProps {
  message: Message
  siblings?: Siblings
  streaming?: boolean
  /** The answer waits for a free engine slot, with this many requests ahead of it. */
  queuePosition?: number | null
  /** Actions are hidden while any answer streams. */
  busy?: boolean
  onRegenerate?: (message: Message) => void
  onEdit?: (message: Message, text: string) => void
  onShowBranch?: (messageId: number) => void
}

function IconButton({ label, onClick, children, disabled }: { label: string; onClick: () => void; children: React.ReactNode; disabled?: boolean }) {
  return (
    <button
      type="button"
      onClick={onClick}
      disabled={disabled}
      aria-label={label}
      title={label}
      className="rounded-md p-1.5 text-zinc-500 hover:bg-zinc-100 hover:text-zinc-900 disabled:opacity-40 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
    >
      {children}
    </button>
  )
}

function BranchSwitcher({ siblings, onShow }: { siblings: Siblings; onShow: (id: number) => void }) {
  const t = useT()
  if (siblings.count < 2) return null
  return (
    <span className="inline-flex items-center text-xs text-zinc-500 dark:text-zinc-400">
      <IconButton label={t('chat.previousBranch')} disabled={siblings.previous === null} onClick={() => siblings.previous !== null && onShow(siblings.previous)}>
        <ChevronLeft className="size-4" aria-hidden />
      </IconButton>
      <span aria-label={t('chat.branch', { index: siblings.index + 1, count: siblings.count })}>
        {siblings.index + 1}/{siblings.count}
      </span>
      <IconButton label={t('chat.nextBranch')} disabled={siblings.next === null} onClick={() => siblings.next !== null && onShow(siblings.next)}>
        <ChevronRight className="size-4" aria-hidden />
      </IconButton>
    </span>
  )
}

function CopyMessage({ text }: { text: string }) {
  const t = useT()
  const [copied, setCopied] = useState(false)
  return (
    <IconButton
      label={copied ? t('common.copied') : t('chat.copy')}
      onClick={async () => {
        if (await copyText(text)) {
          setCopied(true)
          setTimeout(() => setCopied(false), 1500)
        }
      }}
    >
      {copied ? <Check className="size-4" aria-hidden /> : <Copy className="size-4" aria-hidden />}
    </IconButton>
  )
}

function EditBox({ initial, onCancel, onSubmit }: { initial: string; onCancel: () => void; onSubmit: (text: string) => void }) {
  const t = useT()
  const [text, setText] = useState(initial)
  const ref = useRef<HTMLTextAreaElement>(null)
  useEffect(() => {
    ref.current?.focus()
  }, [])
  return (
    <form
      className="w-full rounded-2xl bg-zinc-100 p-3 dark:bg-zinc-800"
      onSubmit={(event) => {
        event.preventDefault()
        if (text.trim()) onSubmit(text)
      }}
    >
      <label className="sr-only" htmlFor="edit-message">
        {t('chat.editLabel')}
      </label>
      <textarea
        id="edit-message"
        ref={ref}
        value={text}
        rows={Math.min(10, Math.max(2, text.split('\n').length))}
        onChange={(event) => setText(event.target.value)}
        onKeyDown={(event) => {
          if (event.key === 'Escape') onCancel()
          if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
            event.preventDefault()
            if (text.trim()) onSubmit(text)
          }
        }}
        className="w-full resize-none bg-transparent text-[15px] outline-none"
      />
      <div className="mt-2 flex justify-end gap-2">
        <button type="button" onClick={onCancel} className="rounded-full px-3 py-1.5 text-sm hover:bg-zinc-200 dark:hover:bg-zinc-700">
          {t('common.cancel')}
        </button>
        <button type="submit" className="rounded-full bg-zinc-900 px-3 py-1.5 text-sm text-white hover:bg-zinc-700 dark:bg-zinc-100 dark:text-zinc-900">
          {t('chat.editSend')}
        </button>
      </div>
    </form>
  )
}

function sameSiblings(a: Siblings | undefined, b: Siblings | undefined): boolean {
  if (a === b) return true
  if (!a || !b) return false
  return a.index === b.index && a.count === b.count && a.previous === b.previous && a.next === b.next
}

/** Re-render only when this message (or its controls) changed: streaming updates touch one message. */
function propsEqual(a: MessageViewProps, b: MessageViewProps): boolean {
  return (
    a.message === b.message &&
    a.streaming === b.streaming &&
    a.queuePosition === b.queuePosition &&
    a.busy === b.busy &&
    a.onRegenerate === b.onRegenerate &&
    a.onEdit === b.onEdit &&
    a.onShowBranch === b.onShowBranch &&
    sameSiblings(a.siblings, b.siblings)
  )
}

export const MessageView = memo(function MessageView({
  message,
  siblings,
  streaming = false,
  queuePosition = null,
  busy = false,
  onRegenerate,
  onEdit,
  onShowBranch,
}: MessageViewProps) {
  const t = useT()
  const [editing, setEditing] = useState(false)

  if (message.role === 'user') {
    return (
      <div className="group flex flex-col items-end gap-1" data-role="user" data-message-id={message.id}>
        {editing && onEdit ? (
          <EditBox
            initial={message.content}
            onCancel={() => setEditing(false)}
            onSubmit={(text) => {
              setEditing(false)
              onEdit(message, text)
            }}
          />
        ) : (
          <div className="max-w-[85%] whitespace-pre-wrap break-words rounded-3xl bg-zinc-100 px-4 py-2.5 text-[15px] leading-relaxed dark:bg-zinc-800">
            {message.content}
          </div>
        )}
        {!editing && (
          <div className="flex items-center gap-0.5 opacity-100 transition-opacity sm:opacity-0 sm:group-focus-within:opacity-100 sm:group-hover:opacity-100">
            {siblings && onShowBranch && <BranchSwitcher siblings={siblings} onShow={onShowBranch} />}
            <CopyMessage text={message.content} />
            {onEdit && !busy && message.id > 0 && (
              <IconButton label={t('chat.edit')} onClick={() => setEditing(true)}>
                <Pencil className="size-4" aria-hidden />
              </IconButton>
            )}
          </div>
        )}
      </div>
    )
  }

  const pending = message.status === 'pending'
  return (
    <div className="group flex gap-3" data-role="assistant" data-message-id={message.id} data-status={message.status}>
      <div className="mt-0.5 flex size-8 shrink-0 items-center justify-center rounded-full border border-zinc-200 bg-white text-accent-600 dark:border-zinc-700 dark:bg-zinc-900 dark:text-accent-500" aria-hidden>
        <Bot className="size-4" />
      </div>
      <div className="min-w-0 flex-1">
        <span className="sr-only">{t('chat.assistant')}:</span>
        {pending && !message.content ? (
          <p className="streaming-caret py-1 text-zinc-500 dark:text-zinc-400" aria-live="polite" data-testid="pending-note">
            {queuePosition === null || queuePosition === undefined
              ? t('chat.pending')
              : queuePosition === 0
                ? t('chat.queuedNext')
                : t('chat.queued', { count: queuePosition })}
          </p>
        ) : (
          <Markdown text={message.content} className={streaming ? 'streaming-caret' : undefined} />
        )}
        {message.status === 'interrupted' && (
          <p className="mt-2 inline-flex items-center gap-1 text-xs text-zinc-500 dark:text-zinc-400">
            <Square className="size-3" aria-hidden /> {t('chat.interrupted')}
          </p>
        )}
        {message.status === 'error' && (
          <p role="alert" className="mt-2 flex items-start gap-1.5 rounded-md bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">
            <AlertTriangle className="mt-0.5 size-4 shrink-0" aria-hidden />
            {t('chat.errorStatus', { message: message.error ?? '' })}
          </p>
        )}
        {!pending && !streaming && (
          <div className="mt-1 flex items-center gap-0.5">
            {siblings && onShowBranch && <BranchSwitcher siblings={siblings} onShow={onShowBranch} />}
            <CopyMessage text={message.content} />
            {onRegenerate && !busy && message.parent_id !== null && (
              <IconButton label={t('chat.regenerate')} onClick={() => onRegenerate(message)}>
                <RefreshCw className="size-4" aria-hidden />
              </IconButton>
            )}
            {message.status !== 'error' && <FeedbackButtons message={message} />}
            {message.token_out ? (
              <span className="ml-2 text-xs text-zinc-500 dark:text-zinc-400">
                {message.model ? `${message.model} · ` : ''}
                {t('chat.tokens', { count: message.token_out })}
              </span>
            ) : null}
          </div>
        )}
      </div>
    </div>
  )
}, propsEqual)
