import type { ReactNode } from 'react'
import { Menu } from 'lucide-react'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'

/** Header + scrolling body for the non-chat pages. */
export function PageShell({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  const t = useT()
  const setSidebarOpen = useUi((s) => s.setSidebarOpen)
  return (
    <div className="flex h-full min-w-0 flex-1 flex-col">
      <header className="flex h-14 shrink-0 items-center gap-2 border-b border-zinc-200 px-3 dark:border-zinc-800">
        <button type="button" className="rounded-lg p-2 hover:bg-zinc-100 md:hidden dark:hover:bg-zinc-800" aria-label={t('nav.openSidebar')} onClick={() => setSidebarOpen(true)}>
          <Menu className="size-5" aria-hidden />
        </button>
        <h1 className="truncate px-2 text-base font-semibold">{title}</h1>
        <div className="ml-auto flex items-center gap-2">{actions}</div>
      </header>
      <div className="min-h-0 flex-1 overflow-y-auto">
        <div className="mx-auto w-full max-w-4xl space-y-6 px-4 py-6 sm:px-6">{children}</div>
      </div>
    </div>
  )
}
