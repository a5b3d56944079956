"""Fault tests against the real RabbitMQ: crashes, kills, lost connections, restarts, data leaks."""
