// Ratings on answers, the training opt-in, the admins' rates and the dataset export panel.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { fireEvent, render, screen, waitFor } from '@testing-library/react'
import { MessageView } from '../src/components/MessageView'
import { TrainingConsentSection } from '../src/components/TrainingConsent'
import { FeedbackRates } from '../src/components/admin/FeedbackRates'
import { DatasetPanel, datasetRequest } from '../src/components/admin/DatasetPanel'
import { useChat } from '../src/stores/chat'
import { useFeedback } from '../src/stores/feedback'
import { useUi } from '../src/stores/ui'
import { tokens } from '../src/api/tokens'
import type { Dataset, Feedback, Message } from '../src/api/types'
import { json, mockFetch, setTokens } from './helpers'

const answer: Message = { id: 12, parent_id: 11, role: 'assistant', content: 'Paris.', status: 'complete', token_in: 1, token_out: 2, model: 'm', finish_reason: 'stop', error: null, created_at: '' }
const path = '/api/conversations/c1/messages/12/feedback'

function saved(rating: 'up' | 'down', correction: string | null = null): Feedback {
  return { message_id: 12, rating, correction, model: 'm', created_at: '', updated_at: '' }
}

beforeEach(() => {
  useUi.setState({ language: 'en' })
  setTokens()
  tokens.reload()
  useFeedback.setState({ conversationId: null, byMessage: {} })
  useChat.setState({ conversationId: 'c1' })
})
afterEach(() => {
  vi.unstubAllGlobals()
  useChat.setState({ conversationId: null })
})

describe('rating answers', () => {
  it('loads the ratings, rates up, switches to down and withdraws', async () => {
    const { calls } = mockFetch({
      'GET /api/conversations/c1/feedback': () => json({ feedback: [] }),
      [`PUT ${path}`]: [() => json(saved('up')), () => json(saved('down'))],
      [`DELETE ${path}`]: () => new Response(null, { status: 204 }),
    })
    render(<MessageView message={answer} />)
    const up = screen.getByRole('button', { name: 'Good answer' })
    const down = screen.getByRole('button', { name: 'Bad answer' })
    await waitFor(() => expect(calls.some((c) => c.url === '/api/conversations/c1/feedback')).toBe(true))
    fireEvent.click(up)
    await waitFor(() => expect(up.getAttribute('aria-pressed')).toBe('true'))
    expect(calls.find((c) => c.method === 'PUT')?.body).toEqual({ rating: 'up', correction: null })
    fireEvent.click(down)
    await waitFor(() => expect(down.getAttribute('aria-pressed')).toBe('true'))
    expect(up.getAttribute('aria-pressed')).toBe('false')
    fireEvent.click(down) // pressing the active thumb again withdraws the rating
    await waitFor(() => expect(down.getAttribute('aria-pressed')).toBe('false'))
    expect(calls.filter((c) => c.method === 'DELETE')).toHaveLength(1)
  })

  it('shows a stored rating and sends a corrected answer from the dialog', async () => {
    const { calls } = mockFetch({
      'GET /api/conversations/c1/feedback': () => json({ feedback: [saved('up')] }),
      [`PUT ${path}`]: () => json(saved('up', 'Paris, the capital.')),
    })
    render(<MessageView message={answer} />)
    await waitFor(() => expect(screen.getByRole('button', { name: 'Good answer' }).getAttribute('aria-pressed')).toBe('true'))
    fireEvent.click(screen.getByRole('button', { name: 'Suggest a better answer' }))
    const box = screen.getByLabelText('Corrected answer') as HTMLTextAreaElement
    expect(box.value).toBe('Paris.') // starts from the answer
    fireEvent.change(box, { target: { value: 'Paris, the capital.' } })
    fireEvent.click(screen.getByRole('button', { name: 'Save correction' }))
    await waitFor(() => expect(screen.queryByRole('dialog')).toBeNull())
    expect(calls.find((c) => c.method === 'PUT')?.body).toEqual({ rating: 'up', correction: 'Paris, the capital.' })
    expect(screen.getByRole('button', { name: 'Edit your corrected answer' })).toBeTruthy()
  })

  it('offers no rating on unsaved, failed or streaming answers', () => {
    mockFetch({ 'GET /api/conversations/c1/feedback': () => json({ feedback: [] }) })
    const { rerender } = render(<MessageView message={{ ...answer, id: -1 }} />)
    expect(screen.queryByRole('button', { name: 'Good answer' })).toBeNull()
    rerender(<MessageView message={{ ...answer, status: 'error', error: 'boom' }} />)
    expect(screen.queryByRole('button', { name: 'Good answer' })).toBeNull()
    rerender(<MessageView message={answer} streaming />)
    expect(screen.queryByRole('button', { name: 'Good answer' })).toBeNull()
  })
})

describe('training opt-in', () => {
  it('shows the default and stores the choice on the server', async () => {
    const { calls } = mockFetch({
      'GET /api/users/me/training': () => json({ opted_in: true, choice: null, default: true }),
      'PUT /api/users/me/training': [
        () => json({ opted_in: false, choice: false, default: true }),
        () => json({ opted_in: true, choice: null, default: true }),
      ],
    })
    render(<TrainingConsentSection />)
    const box = (await screen.findByLabelText('Allow my rated conversations to be used for training')) as HTMLInputElement
    expect(box.checked).toBe(true)
    expect(screen.getByTestId('training-state').textContent).toContain('includes conversations by default')
    fireEvent.click(box)
    await waitFor(() => expect(box.checked).toBe(false))
    expect(calls.find((c) => c.method === 'PUT')?.body).toEqual({ opted_in: false })
    fireEvent.click(screen.getByRole('button', { name: 'Use the server default' }))
    await waitFor(() => expect(box.checked).toBe(true))
    expect(calls.filter((c) => c.method === 'PUT').at(-1)?.body).toEqual({ opted_in: null })
  })
})

describe('admin views', () => {
  it('lists the rates per model with the usage filters', async () => {
    const rates = (model: string | null, up: number, down: number) => ({ model, answers: 10, rated: up + down, up, down, corrected: 1, up_rate: up / (up + down), down_rate: down / (up + down), rated_share: 0.5 })
    const { calls } = mockFetch({
      'GET /api/admin/feedback/summary': () => json({ since: null, until: null, models: [rates('base', 3, 1), rates('base:tuned@2', 1, 0)], totals: rates(null, 4, 1) }),
    })
    render(<FeedbackRates query={{ since: '2026-01-01T00:00:00Z', model: 'base' }} />)
    const row = await screen.findByText('base:tuned@2')
    expect(row.closest('tr')?.textContent).toContain('100 %')
    expect(screen.getByText('base').closest('tr')?.textContent).toContain('75 %')
    expect(calls[0]?.url).toContain('since=2026-01-01')
    expect(calls[0]?.url).toContain('model=base')
  })

  it('turns the form into an export request', () => {
    expect(datasetRequest({ rating: 'up', model: 'm', since: '2026-01-01', until: '2026-01-31', usernames: 'ann, bo', minChars: '20', holdoutPercent: '15' })).toEqual({
      rating: 'up', model: 'm', since: '2026-01-01T00:00:00Z', until: '2026-02-01T00:00:00.000Z', usernames: ['ann', 'bo'], min_chars: 20, holdout: 0.15,
    })
    expect(datasetRequest({ rating: 'endorsed', model: '', since: '', until: '', usernames: '', minChars: '1', holdoutPercent: '10' })).toEqual({ rating: 'endorsed', min_chars: 1, holdout: 0.1 })
  })

  it('exports a dataset and shows its hash, counts and files', async () => {
    const dataset: Dataset = {
      format: 'chatgate-chat-jsonl/1', version: '0123456789abcdef', hash: 'sha256:0123456789abcdef99', created_at: '2026-12-07T00:00:00Z', filters: {},
      counts: { rated: 9, opted_out: 2, duplicates: 1, too_short: 0, train: 7, heldout: 1 }, scrubbed: { email: 3 }, models: { m: 8 }, files: {},
    }
    const { calls } = mockFetch({
      'GET /api/admin/datasets': () => json({ datasets: [] }),
      'POST /api/admin/datasets': () => json(dataset, 201),
      'GET /api/admin/datasets/0123456789abcdef/files/train.jsonl': () => new Response('{"messages":[]}\n', { headers: { 'content-type': 'application/x-ndjson' } }),
    })
    URL.createObjectURL = vi.fn(() => 'blob:x')
    URL.revokeObjectURL = vi.fn()
    render(<DatasetPanel />)
    fireEvent.change(screen.getByLabelText('Held out (%)'), { target: { value: '20' } })
    fireEvent.click(screen.getByRole('button', { name: 'Export dataset' }))
    const result = await screen.findByTestId('dataset-result')
    expect(result.textContent).toContain('sha256:0123456789abcdef99')
    expect(result.querySelector('[data-count="train"]')?.textContent).toBe('7')
    expect(result.querySelector('[data-count="opted_out"]')?.textContent).toBe('2')
    expect(result.textContent).toContain('email 3')
    expect(calls.find((c) => c.method === 'POST')?.body).toMatchObject({ rating: 'endorsed', holdout: 0.2 })
    fireEvent.click(screen.getByRole('button', { name: 'train.jsonl' }))
    await waitFor(() => expect(URL.createObjectURL).toHaveBeenCalled())
  })
})
