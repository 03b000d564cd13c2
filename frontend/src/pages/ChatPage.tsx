import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react'
import { AlertTriangle, ArrowDown, Menu, SlidersHorizontal, X } from 'lucide-react'
import { useChat } from '../stores/chat'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'
import { pathTo, siblingsIndex } from '../lib/tree'
import type { Message } from '../api/types'
import { MessageView } from '../components/MessageView'
import { Composer } from '../components/Composer'
import { ChatOptions, ModelSelect } from '../components/ChatOptions'

/** Distance from the bottom (px) within which the view keeps following new text. */
export const STICK_THRESHOLD = 48

export function ChatPage({ conversationId }: { conversationId: string | null }) {
  const t = useT()
  const chat = useChat()
  const setSidebarOpen = useUi((s) => s.setSidebarOpen)
  const [optionsOpen, setOptionsOpen] = useState(false)
  const scroller = useRef<HTMLDivElement>(null)
  const stick = useRef(true)
  const [atBottom, setAtBottom] = useState(true)

  useEffect(() => {
    void useChat.getState().open(conversationId)
  }, [conversationId])

  const path = useMemo(() => pathTo(chat.messages, chat.leafId), [chat.messages, chat.leafId])
  const siblings = useMemo(() => siblingsIndex(chat.messages), [chat.messages])

  const scrollToBottom = useCallback((smooth = false) => {
    const el = scroller.current
    if (!el) return
    el.scrollTo({ top: el.scrollHeight, behavior: smooth ? 'smooth' : 'auto' })
    stick.current = true
    setAtBottom(true)
  }, [])

  // Follow the answer as it grows, unless the user scrolled up to read.
  useLayoutEffect(() => {
    if (stick.current) scrollToBottom()
  }, [path, scrollToBottom])

  useEffect(() => {
    stick.current = true
    scrollToBottom()
  }, [chat.conversationId, scrollToBottom])

  function onScroll() {
    const el = scroller.current
    if (!el) return
    const near = el.scrollHeight - el.scrollTop - el.clientHeight < STICK_THRESHOLD
    stick.current = near
    setAtBottom(near)
  }

  const send = (text: string) => {
    stick.current = true
    void chat.send(text)
  }
  const onRegenerate = useCallback((message: Message) => {
    if (message.parent_id === null) return
    stick.current = true
    void useChat.getState().regenerate(message.parent_id)
  }, [])
  const onEdit = useCallback((message: Message, text: string) => {
    stick.current = true
    void useChat.getState().editAndResend(message.id, text)
  }, [])
  const onShowBranch = useCallback((id: number) => useChat.getState().showBranch(id), [])

  const banner =
    chat.banner === 'generation_running'
      ? t('chat.generationRunning')
      : chat.banner === 'connection_lost'
        ? t('chat.connectionLost')
        : chat.banner

  const title = chat.conversation?.title ?? (conversationId ? '' : t('nav.newChat'))

  return (
    <div className="flex h-full min-w-0 flex-1 flex-col">
      <header className="flex h-14 shrink-0 items-center gap-2 border-b border-zinc-200 px-3 dark:border-zinc-800">
        <button type="button" className="rounded-lg p-2 hover:bg-zinc-100 md:hidden dark:hover:bg-zinc-800" aria-label={t('nav.openSidebar')} onClick={() => setSidebarOpen(true)}>
          <Menu className="size-5" aria-hidden />
        </button>
        <label htmlFor="header-model" className="sr-only">
          {t('chat.model')}
        </label>
        <ModelSelect id="header-model" className="max-w-[45vw] truncate rounded-lg border-0 bg-transparent py-1.5 pl-2 pr-8 text-base font-semibold hover:bg-zinc-100 focus:ring-2 focus:ring-accent-500/40 dark:bg-zinc-900 dark:hover:bg-zinc-800" />
        <h1 className="sr-only">{title}</h1>
        <p className="hidden min-w-0 flex-1 truncate text-center text-sm text-zinc-500 sm:block dark:text-zinc-400" aria-hidden>
          {chat.conversation?.title}
        </p>
        <div className="ml-auto">
          <button type="button" onClick={() => setOptionsOpen(true)} className="inline-flex items-center gap-2 rounded-lg p-2 text-sm hover:bg-zinc-100 dark:hover:bg-zinc-800" aria-label={t('chat.options')} title={t('chat.options')}>
            <SlidersHorizontal className="size-5" aria-hidden />
          </button>
        </div>
      </header>

      <div ref={scroller} onScroll={onScroll} className="relative min-h-0 flex-1 overflow-y-auto" data-testid="chat-scroller">
        {chat.status === 'loading' && <p className="p-8 text-center text-sm text-zinc-500">{t('common.loading')}</p>}
        {chat.status === 'notFound' && (
          <p role="alert" className="p-8 text-center text-sm text-zinc-600 dark:text-zinc-300">
            {t('chat.notFound')}
          </p>
        )}
        {chat.status === 'error' && (
          <p role="alert" className="p-8 text-center text-sm text-red-700 dark:text-red-400">
            {chat.loadError ?? t('common.error')}
          </p>
        )}
        {path.length === 0 && (chat.status === 'empty' || chat.status === 'ready') && (
          <div className="flex h-full flex-col items-center justify-center px-4 text-center">
            <h2 className="text-2xl font-semibold sm:text-3xl">{t('chat.empty')}</h2>
            <p className="mt-2 text-sm text-zinc-500 dark:text-zinc-400">{t('chat.emptyHint')}</p>
          </div>
        )}
        {path.length > 0 && (
          <section aria-label={t('chat.log')} className="mx-auto w-full max-w-3xl space-y-6 px-4 py-6 sm:px-6">
            {path.map((message) => (
              <MessageView
                key={message.id}
                message={message}
                siblings={siblings.get(message.id)}
                streaming={chat.streaming && message.id === chat.streamingMessageId}
                queuePosition={message.id === chat.streamingMessageId ? chat.queuePosition : null}
                busy={chat.streaming}
                onRegenerate={onRegenerate}
                onEdit={onEdit}
                onShowBranch={onShowBranch}
              />
            ))}
          </section>
        )}
      </div>

      <div className="relative shrink-0 px-3 pb-3 pt-2 sm:px-6">
        {!atBottom && path.length > 0 && (
          <button
            type="button"
            onClick={() => scrollToBottom(true)}
            aria-label={t('chat.scrollToBottom')}
            className="absolute -top-12 left-1/2 z-10 flex size-9 -translate-x-1/2 items-center justify-center rounded-full border border-zinc-300 bg-white shadow-md hover:bg-zinc-50 dark:border-zinc-600 dark:bg-zinc-800 dark:hover:bg-zinc-700"
          >
            <ArrowDown className="size-4" aria-hidden />
          </button>
        )}
        <div className="mx-auto w-full max-w-3xl">
          {chat.reconnecting && (
            <p role="status" className="mb-2 text-center text-xs text-amber-700 dark:text-amber-400">
              {t('chat.reconnecting')}
            </p>
          )}
          {banner && (
            <div role="alert" className="mb-2 flex items-start gap-2 rounded-lg bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-200">
              <AlertTriangle className="mt-0.5 size-4 shrink-0" aria-hidden />
              <span className="flex-1">{banner}</span>
              <button type="button" onClick={chat.dismissBanner} aria-label={t('common.close')} className="rounded p-0.5 hover:bg-amber-100 dark:hover:bg-amber-900">
                <X className="size-4" aria-hidden />
              </button>
            </div>
          )}
          <Composer streaming={chat.streaming} stopping={chat.stopping} onSend={send} onStop={() => void chat.stop()} disabled={chat.status === 'loading' || chat.status === 'notFound'} />
          <p className="mt-1.5 hidden text-center text-xs text-zinc-500 sm:block dark:text-zinc-400" aria-hidden>
            {t('chat.hint')}
          </p>
        </div>
      </div>
      {optionsOpen && <ChatOptions onClose={() => setOptionsOpen(false)} />}
    </div>
  )
}
