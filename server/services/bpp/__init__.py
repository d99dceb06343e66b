"""The Beckn BPP context (v1.1.0): the durable inbound pipeline, what each action does, the catalog
of programs, orders as enrollments, what an order shows of its settlement, our signing keys.

Depends on the flexibility context (`flex`) and, through it, on `sep2`; nothing depends on it.
"""
