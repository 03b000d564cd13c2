import { useEffect, useState } from 'react'
import { api, type FeedbackSummary, type UsageQuery } from '../../api'
import { useT } from '../../i18n'

function percent(value: number | null): string {
  return value === null ? '–' : `${Math.round(value * 100)} %`
}

/** Admins: thumbs up/down and corrections per model id (a fine-tuned version is its own id). */
export function FeedbackRates({ query }: { query: UsageQuery }) {
  const t = useT()
  const [summary, setSummary] = useState<FeedbackSummary | null>(null)
  const [failed, setFailed] = useState(false)
  const { since, until, model } = query

  useEffect(() => {
    let live = true
    api.feedbackSummary({ since, until, model }).then(
      (result) => live && setSummary(result),
      () => live && setFailed(true),
    )
    return () => {
      live = false
    }
  }, [since, until, model])

  if (failed || !summary) return null
  return (
    <div className="space-y-2">
      <h2 id="feedback-rates" className="text-base font-semibold">
        {t('feedback.rates')}
      </h2>
      {summary.models.length === 0 ? (
        <p className="text-sm text-zinc-500 dark:text-zinc-400">{t('feedback.noAnswers')}</p>
      ) : (
        <div className="card overflow-x-auto p-0" tabIndex={0} role="region" aria-labelledby="feedback-rates">
          <table className="w-full text-left text-sm">
            <thead className="bg-zinc-50 text-xs uppercase text-zinc-500 dark:bg-zinc-800 dark:text-zinc-400">
              <tr>
                <th scope="col" className="px-3 py-2 font-medium">{t('usage.model')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('feedback.answers')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('feedback.rated')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('feedback.up')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('feedback.down')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('feedback.corrected')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('feedback.upRate')}</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-zinc-200 tabular-nums dark:divide-zinc-800">
              {[...summary.models, summary.totals].map((row, i) => {
                const total = i === summary.models.length
                return (
                  <tr key={total ? 'total' : (row.model ?? '')} className={total ? 'font-semibold' : undefined} data-model={total ? undefined : (row.model ?? '')}>
                    <th scope="row" className="whitespace-nowrap px-3 py-2 text-left font-medium">
                      {total ? t('usage.total') : (row.model ?? '–')}
                    </th>
                    <td className="px-3 py-2 text-right">{row.answers.toLocaleString()}</td>
                    <td className="px-3 py-2 text-right">{row.rated.toLocaleString()}</td>
                    <td className="px-3 py-2 text-right">{row.up.toLocaleString()}</td>
                    <td className="px-3 py-2 text-right">{row.down.toLocaleString()}</td>
                    <td className="px-3 py-2 text-right">{row.corrected.toLocaleString()}</td>
                    <td className="px-3 py-2 text-right">{percent(row.up_rate)}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </div>
      )}
    </div>
  )
}
