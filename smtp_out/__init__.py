"""Mail going out: delivery workers that resolve MX hosts and deliver over SMTP.

Workers take ``deliveries`` rows (one per recipient domain of a sent message) from the outgoing
queue and record each recipient's result. See ``smtp_out/README.md``.
"""
