// A small Server-Sent Events parser for fetch() bodies (EventSource cannot send
// an Authorization header). Follows the WHATWG event-stream parsing rules.

export interface SSEEvent {
  id: number | null
  event: string | null
  data: string
}

export class SSEParser {
  private buffer = ''
  private data: string[] = []
  private event: string | null = null
  private id: number | null = null
  private sawField = false

  /** Feed decoded text; returns the events completed by it. */
  feed(text: string): SSEEvent[] {
    this.buffer += text
    const out: SSEEvent[] = []
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer)
      if (!match) break
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break
      const line = this.buffer.slice(0, match.index)
      this.buffer = this.buffer.slice(match.index + match[0].length)
      const event = this.line(line)
      if (event) out.push(event)
    }
    return out
  }

  private line(line: string): SSEEvent | null {
    if (line === '') {
      if (!this.sawField) return null
      const event: SSEEvent = { id: this.id, event: this.event, data: this.data.join('\n') }
      this.data = []
      this.event = null
      this.sawField = false
      // `id` persists across events (last event id), but we report it per event.
      return event.data === '' && event.event === null ? null : event
    }
    if (line.startsWith(':')) return null
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'data':
        this.data.push(value)
        this.sawField = true
        break
      case 'event':
        this.event = value
        this.sawField = true
        break
      case 'id': {
        const n = Number.parseInt(value, 10)
        if (!value.includes('\0') && Number.isFinite(n)) this.id = n
        this.sawField = true
        break
      }
      default:
        break
    }
    return null
  }
}

/** Yields the events of an SSE response body until it ends (abort the fetch to stop). */
export async function* readSSE(body: ReadableStream<Uint8Array>): AsyncGenerator<SSEEvent> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  const parser = new SSEParser()
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      for (const event of parser.feed(decoder.decode(value, { stream: true }))) yield event
    }
    // An event not ended by a blank line when the stream closes is incomplete: dropped.
    parser.feed(decoder.decode())
  } finally {
    // Closes the connection if the consumer stopped early; harmless after the end.
    reader.cancel().catch(() => undefined)
  }
}
