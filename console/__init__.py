"""The operator console (`stepstream console`): executions, their live DAGs, why steps
wait, actions through the replay topic, dead letters and the seed's figures."""
