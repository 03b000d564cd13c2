import { useEffect, useRef, useState } from 'react'
import { ArrowUp, Square } from 'lucide-react'
import { useT } from '../i18n'

const MAX_HEIGHT = 200

/** The message box: Enter sends, Shift+Enter adds a line (never while an IME is composing). */
export function Composer({
  streaming,
  stopping,
  onSend,
  onStop,
  disabled,
}: {
  streaming: boolean
  stopping: boolean
  onSend: (text: string) => void
  onStop: () => void
  disabled?: boolean
}) {
  const t = useT()
  const [text, setText] = useState('')
  const area = useRef<HTMLTextAreaElement>(null)

  useEffect(() => {
    const el = area.current
    if (!el) return
    el.style.height = 'auto'
    el.style.height = `${Math.min(el.scrollHeight, MAX_HEIGHT)}px`
  }, [text])

  useEffect(() => {
    if (!streaming) area.current?.focus()
  }, [streaming])

  function submit() {
    if (streaming || disabled || !text.trim()) return
    onSend(text)
    setText('')
  }

  return (
    <form
      className="relative flex items-end gap-2 rounded-3xl border border-zinc-300 bg-white p-2 pl-4 shadow-sm focus-within:border-zinc-400 dark:border-zinc-700 dark:bg-zinc-800 dark:focus-within:border-zinc-500"
      onSubmit={(event) => {
        event.preventDefault()
        submit()
      }}
    >
      <label htmlFor="composer" className="sr-only">
        {t('chat.inputLabel')}
      </label>
      <textarea
        id="composer"
        ref={area}
        rows={1}
        value={text}
        placeholder={t('chat.placeholder')}
        aria-describedby="composer-hint"
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(event) => {
          if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing && event.keyCode !== 229) {
            event.preventDefault()
            submit()
          }
        }}
        className="max-h-[200px] min-h-[40px] flex-1 resize-none bg-transparent py-2 text-[15px] leading-6 outline-none placeholder:text-zinc-500 dark:placeholder:text-zinc-400"
      />
      <span id="composer-hint" className="sr-only">
        {t('chat.hint')}
      </span>
      {streaming ? (
        <button
          type="button"
          onClick={onStop}
          disabled={stopping}
          aria-label={t('chat.stop')}
          title={t('chat.stop')}
          className="flex size-10 shrink-0 items-center justify-center rounded-full bg-zinc-900 text-white hover:bg-zinc-700 disabled:opacity-50 dark:bg-zinc-100 dark:text-zinc-900"
        >
          <Square className="size-4 fill-current" aria-hidden />
        </button>
      ) : (
        <button
          type="submit"
          disabled={disabled || !text.trim()}
          aria-label={t('chat.send')}
          title={t('chat.send')}
          className="flex size-10 shrink-0 items-center justify-center rounded-full bg-zinc-900 text-white hover:bg-zinc-700 disabled:bg-zinc-300 disabled:text-zinc-100 dark:bg-zinc-100 dark:text-zinc-900 dark:disabled:bg-zinc-600 dark:disabled:text-zinc-400"
        >
          <ArrowUp className="size-5" aria-hidden />
        </button>
      )}
    </form>
  )
}
