import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { act, fireEvent, render, screen } from '@testing-library/react'
import { ChatPage, STICK_THRESHOLD } from '../src/pages/ChatPage'
import { useChat, resetChatModule } from '../src/stores/chat'
import { tokens } from '../src/api/tokens'
import type { Message } from '../src/api/types'
import { json, mockFetch, setTokens } from './helpers'

function message(id: number, parent: number | null, role: string, content: string, status = 'complete'): Message {
  return { id, parent_id: parent, role, content, status, token_in: null, token_out: null, model: null, finish_reason: null, error: null, created_at: '' }
}

beforeEach(() => {
  setTokens()
  tokens.reload()
  resetChatModule()
  mockFetch({
    'GET /api/conversations/c1': () =>
      json({ id: 'c1', title: 'T', model: null, system_prompt: null, archived: false, created_at: '', updated_at: '', messages: [message(1, null, 'user', 'q'), message(2, 1, 'assistant', 'a')], active_generation_id: null }),
  })
})
afterEach(() => vi.unstubAllGlobals())

describe('ChatPage auto-scroll', () => {
  it('follows new text at the bottom and pauses when the user scrolls up', async () => {
    const scrollTo = vi.spyOn(Element.prototype, 'scrollTo')
    render(<ChatPage conversationId="c1" />)
    await screen.findByText('a')
    const scroller = screen.getByTestId('chat-scroller')
    Object.defineProperty(scroller, 'scrollHeight', { configurable: true, value: 2000 })
    Object.defineProperty(scroller, 'clientHeight', { configurable: true, value: 500 })

    const grow = (text: string) =>
      act(() => {
        const state = useChat.getState()
        useChat.setState({ messages: { ...state.messages, 2: { ...(state.messages[2] as Message), content: text } } })
      })

    // At the bottom: new text scrolls.
    scroller.scrollTop = 2000 - 500 - 10
    fireEvent.scroll(scroller)
    scrollTo.mockClear()
    grow('a b')
    expect(scrollTo).toHaveBeenCalled()

    // Scrolled up to read: new text does not move the view, and a jump button appears.
    scroller.scrollTop = 2000 - 500 - STICK_THRESHOLD - 200
    fireEvent.scroll(scroller)
    scrollTo.mockClear()
    grow('a b c')
    expect(scrollTo).not.toHaveBeenCalled()
    fireEvent.click(screen.getByRole('button', { name: 'Scroll to the newest message' }))
    expect(scrollTo).toHaveBeenCalled()

    // Back at the bottom: following again.
    scrollTo.mockClear()
    grow('a b c d')
    expect(scrollTo).toHaveBeenCalled()
  })

  it('renders the conversation with its model picker, options and labelled composer', async () => {
    render(<ChatPage conversationId="c1" />)
    await screen.findByText('q')
    expect(screen.getByLabelText('Model')).toBeTruthy()
    expect(screen.getByLabelText('Message')).toBeTruthy()
    fireEvent.click(screen.getByRole('button', { name: 'Chat options' }))
    expect(screen.getByRole('dialog', { name: 'Chat options' })).toBeTruthy()
    expect(screen.getByLabelText('System prompt')).toBeTruthy()
    fireEvent.keyDown(screen.getByRole('dialog'), { key: 'Escape' })
    expect(screen.queryByRole('dialog')).toBeNull()
  })
})
