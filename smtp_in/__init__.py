"""Mail coming in: the SMTP server (aiosmtpd, MX and submission ports) and the processors.

The MX port accepts mail for our domains; the submission port accepts mail from signed-in users
(AUTH after STARTTLS) for any domain and hands it to :func:`storage.outbox.submit`. Both make the
message durable (blob, then a committed row) and only then answer 250. Processors take the
queued rows, parse the MIME, and file a copy in each recipient's Inbox,
publishing ``mail.new`` after commit. See ``smtp_in/README.md``.
"""
