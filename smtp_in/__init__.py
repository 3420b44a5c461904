"""Mail coming in: the SMTP server (aiosmtpd) and the processors.

The server accepts mail for our domains, makes it durable (blob, then a committed row) and only
then answers 250. Processors take the queued rows, parse the MIME, and file a copy in each
recipient's Inbox, publishing ``mail.new`` after commit. See ``smtp_in/README.md``.
"""
