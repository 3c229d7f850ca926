"""Moderated streams: chat/completions SSE (chat) and the Responses API event stream (responses)."""
