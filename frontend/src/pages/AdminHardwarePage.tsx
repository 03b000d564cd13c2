import { useCallback, useState } from 'react'
import { Cpu, MonitorX } from 'lucide-react'
import { api, type GpuDevice, type HardwareStatus } from '../api'
import { useAuth } from '../stores/auth'
import { useT } from '../i18n'
import { usePolling } from '../lib/polling'
import { gib } from '../lib/admin'
import { PageShell } from '../components/PageShell'
import { Gauge } from '../components/Gauge'

const MUTED = 'text-zinc-500 dark:text-zinc-400'

function GpuCard({ device }: { device: GpuDevice }) {
  const t = useT()
  const unknown = t('hardware.unknown')
  const label = (gauge: string) => t('hardware.gaugeLabel', { gauge, index: device.index })
  const used = device.memory_used_bytes || device.memory_used_mib * 1024 * 1024
  const total = device.memory_total_bytes || device.memory_total_mib * 1024 * 1024
  const power =
    device.power_w === null
      ? unknown
      : device.power_limit_w
        ? t('hardware.powerValue', { power: Math.round(device.power_w), limit: Math.round(device.power_limit_w) })
        : t('hardware.powerOnly', { power: Math.round(device.power_w) })
  return (
    <li className="card space-y-4" data-gpu={device.index}>
      <div className="flex items-start gap-3">
        <Cpu className="mt-0.5 size-5 shrink-0 text-accent-700 dark:text-accent-500" aria-hidden />
        <div className="min-w-0">
          <h2 className="text-base font-semibold">{t('hardware.gpu', { index: device.index })}</h2>
          <p className={`break-words text-sm ${MUTED}`}>{device.name}</p>
        </div>
      </div>
      <Gauge
        testId="gauge-memory"
        label={t('hardware.memory')}
        ariaLabel={label(t('hardware.memory'))}
        value={used}
        max={total}
        text={t('hardware.memoryValue', { used: gib(used), total: gib(total) })}
        warnAt={85}
        badAt={95}
      />
      <Gauge
        testId="gauge-utilization"
        label={t('hardware.utilization')}
        ariaLabel={label(t('hardware.utilization'))}
        value={device.utilization_percent}
        text={device.utilization_percent === null ? unknown : `${device.utilization_percent}%`}
        warnAt={101}
        badAt={101}
      />
      <Gauge
        testId="gauge-temperature"
        label={t('hardware.temperature')}
        ariaLabel={label(t('hardware.temperature'))}
        value={device.temperature_c}
        max={100}
        text={device.temperature_c === null ? unknown : `${device.temperature_c} °C`}
        warnAt={75}
        badAt={85}
      />
      <Gauge
        testId="gauge-power"
        label={t('hardware.power')}
        ariaLabel={label(t('hardware.power'))}
        value={device.power_w}
        max={device.power_limit_w}
        text={power}
        warnAt={90}
        badAt={98}
      />
    </li>
  )
}

/** GPUs of this machine with live gauges; a clear empty state where there are none. */
export function AdminHardwarePage({ pollMs = 2000 }: { pollMs?: number }) {
  const t = useT()
  const isAdmin = useAuth((s) => s.identity?.role === 'admin')
  const [status, setStatus] = useState<HardwareStatus | null>(null)
  const [error, setError] = useState<string | null>(null)

  const load = useCallback(async () => {
    try {
      setStatus(await api.hardware())
      setError(null)
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err))
    }
  }, [])
  usePolling(load, pollMs, isAdmin)

  if (!isAdmin) {
    return (
      <PageShell title={t('hardware.title')}>
        <p role="alert">{t('admin.forbidden')}</p>
      </PageShell>
    )
  }

  const empty = status && (!status.available || status.devices.length === 0)
  return (
    <PageShell title={t('hardware.title')}>
      {error && (
        <p role="alert" className="text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      )}
      {!status && !error && <p className={`text-sm ${MUTED}`}>{t('common.loading')}</p>}
      {empty && (
        <section className="card flex flex-col items-center gap-2 py-10 text-center" data-testid="no-gpu" aria-labelledby="no-gpu-title">
          <MonitorX className="size-10 text-zinc-400" aria-hidden />
          <h2 id="no-gpu-title" className="text-lg font-semibold">
            {t('hardware.noGpu')}
          </h2>
          {status.message && <p className="max-w-prose break-words text-sm text-zinc-600 dark:text-zinc-300">{status.message}</p>}
          <p className={`max-w-prose break-keep text-sm ${MUTED}`}>{t('hardware.noGpuHelp')}</p>
        </section>
      )}
      {status && !empty && (
        <>
          <p className={`text-sm ${MUTED}`}>{t('hardware.live')}</p>
          <ul className="grid gap-4 md:grid-cols-2">
            {status.devices.map((device) => (
              <GpuCard key={device.index} device={device} />
            ))}
          </ul>
        </>
      )}
    </PageShell>
  )
}
