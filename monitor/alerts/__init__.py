"""The alerts stage: findings → per-channel digests, stored in the outbox with the sweep, then
delivered through Apprise. Planning is ``plan``, delivery ``deliver``; one renderer per channel
kind (``chat``, ``email``, ``slack``) draws the one finding view (``monitor.findings``)."""
