import { X } from 'lucide-react'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'

export function Toast() {
  const toast = useUi((s) => s.toast)
  const dismiss = useUi((s) => s.dismissToast)
  const t = useT()
  return (
    <div aria-live="polite" className="pointer-events-none fixed inset-x-0 bottom-4 z-[60] flex justify-center px-4">
      {toast && (
        <div
          role={toast.kind === 'error' ? 'alert' : 'status'}
          className={`pointer-events-auto flex items-center gap-3 rounded-lg px-4 py-2.5 text-sm shadow-lg ${
            toast.kind === 'error' ? 'bg-red-600 text-white' : 'bg-zinc-900 text-white dark:bg-zinc-100 dark:text-zinc-900'
          }`}
        >
          <span>{toast.text}</span>
          <button type="button" onClick={dismiss} aria-label={t('common.close')} className="rounded p-0.5 hover:bg-white/20">
            <X className="size-4" aria-hidden />
          </button>
        </div>
      )}
    </div>
  )
}
