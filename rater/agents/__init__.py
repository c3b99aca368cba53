"""The worker's consumers: Faust agents for call attempts and subscription events (and
for CDRs with `RATER_CDR_CONSUMER=faust`), the direct CDR consumer (the default), and
the delivery contract all of them keep (`delivery`). Each calls a step of
`rater.service`; none holds a rule of its own."""
