"""Every message Tokenbot posts on its own, posted once: the kinds (:mod:`.kinds`), one
post and its settling (:mod:`.delivery`), a delivery of what is due (:mod:`.run`),
destinations side by side (:mod:`.dispatch`). The rows are :mod:`bot.services.outbox`."""
