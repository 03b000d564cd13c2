import { describe, expect, it } from 'vitest'
import { readSSE, SSEParser } from '../src/api/sse'

describe('SSEParser', () => {
  it('parses named and unnamed events with ids', () => {
    const parser = new SSEParser()
    const events = parser.feed('id: 1\nevent: conversation\ndata: {"a":1}\n\nid: 2\ndata: {"b":2}\n\n')
    expect(events).toEqual([
      { id: 1, event: 'conversation', data: '{"a":1}' },
      { id: 2, event: null, data: '{"b":2}' },
    ])
  })

  it('handles input split at any byte and CRLF line endings', () => {
    const text = 'id: 7\r\nevent: done\r\ndata: {"status":"complete"}\r\n\r\n: keep-alive\r\n\r\nid: 8\ndata: x\n\n'
    for (let size = 1; size < text.length; size++) {
      const parser = new SSEParser()
      const events = []
      for (let i = 0; i < text.length; i += size) events.push(...parser.feed(text.slice(i, i + size)))
      expect(events).toEqual([
        { id: 7, event: 'done', data: '{"status":"complete"}' },
        { id: 8, event: null, data: 'x' },
      ])
    }
  })

  it('joins multi-line data and ignores comments and unknown fields', () => {
    const parser = new SSEParser()
    expect(parser.feed(': hi\nretry: 10\ndata: a\ndata: b\nfoo: bar\n\n')).toEqual([{ id: null, event: null, data: 'a\nb' }])
  })

  it('reads a response body and drops an unterminated last event', async () => {
    const body = new Response('id: 1\ndata: one\n\nid: 2\ndata: tw').body as ReadableStream<Uint8Array>
    const events = []
    for await (const event of readSSE(body)) events.push(event)
    expect(events).toEqual([{ id: 1, event: null, data: 'one' }])
  })

  it('decodes UTF-8 split across chunks (Korean)', async () => {
    const bytes = new TextEncoder().encode('data: 안녕하세요! 오늘 날씨 어때요?\n\n')
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const byte of bytes) controller.enqueue(new Uint8Array([byte]))
        controller.close()
      },
    })
    const events = []
    for await (const event of readSSE(body)) events.push(event)
    expect(events[0]?.data).toBe('안녕하세요! 오늘 날씨 어때요?')
  })
})
