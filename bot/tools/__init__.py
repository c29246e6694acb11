"""Tools the agent may call: the registry (`registry`) and the tools themselves."""
