import { useEffect, useRef } from 'react'

const visible = (): boolean => typeof document === 'undefined' || document.visibilityState !== 'hidden'

/**
 * Runs `task` now and then `intervalMs` after each run ends (never two at once), only while the
 * page is visible: polling pauses when the tab is hidden, runs at once when it shows again, and
 * stops when the component unmounts or `enabled` turns false. Errors are the task's business.
 */
export function usePolling(task: () => unknown, intervalMs: number, enabled = true): void {
  const latest = useRef(task)
  useEffect(() => {
    latest.current = task
  })

  useEffect(() => {
    if (!enabled) return
    let stopped = false
    let running = false
    let timer: ReturnType<typeof setTimeout> | undefined

    const schedule = () => {
      clearTimeout(timer)
      timer = undefined
      if (!stopped && visible()) timer = setTimeout(() => void run(), intervalMs)
    }
    const run = async () => {
      if (stopped || running) return
      running = true
      try {
        await latest.current()
      } catch {
        /* the task reports its own errors */
      } finally {
        running = false
      }
      schedule()
    }
    const onVisibility = () => {
      if (visible()) {
        clearTimeout(timer)
        void run()
      } else {
        clearTimeout(timer)
        timer = undefined
      }
    }

    document.addEventListener('visibilitychange', onVisibility)
    if (visible()) void run()
    return () => {
      stopped = true
      clearTimeout(timer)
      document.removeEventListener('visibilitychange', onVisibility)
    }
  }, [intervalMs, enabled])
}
