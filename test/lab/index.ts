export {
  createLab,
  removeStaleLabs,
  netnsInodeOfPid,
  labAddresses,
  labAddresses6,
  podSearchPath,
} from './lab.js';
export type { Lab, LabNode, LabPod, LabUpstream, LabOptions } from './lab.js';
export {
  readConntrackStats,
  counterDelta,
  readSnmpCounter,
  readSnmp6Counter,
} from './kernel-counters.js';
export type { ConntrackStats } from './kernel-counters.js';
export { generatorPath } from './generators.js';
export type { GeneratorName } from './generators.js';
export { labZone, labLocalZones, nodataSearchDomain, readQueryLog } from './dnsmasq.js';
export type { DnsBackend, LoggedQuery } from './dnsmasq.js';
export { runSnatRace, startSnatRaceLoop } from './scenarios/snat-race.js';
export type { SnatRaceOptions, SnatRaceResult, SnatRaceLoop } from './scenarios/snat-race.js';
export { runDnatClash } from './scenarios/dnat-clash.js';
export type { DnatClashOptions, DnatClashResult } from './scenarios/dnat-clash.js';
export {
  runDnsBackendStopped,
  runDnsBlocked,
  runNoListener,
  sendQueries,
} from './scenarios/dns-queries.js';
export type {
  DnsBlockedOptions,
  DnsBlockedResult,
  NoListenerOptions,
  NoListenerResult,
  QueryBurst,
  StoppedBackendOptions,
  StoppedBackendRun,
} from './scenarios/dns-queries.js';
export { runResolver, defaultResolverNames } from './scenarios/resolver.js';
export type {
  ResolverResult,
  ResolverRun,
  ResolvedName,
  ResolverLibrary,
} from './scenarios/resolver.js';
export { lookUpIn, runResolversFirewalled } from './scenarios/resolvers-firewalled.js';
export type {
  FirewalledResolver,
  FirewalledResolverRun,
  FirewalledResolversOptions,
  FirewalledResolversRun,
} from './scenarios/resolvers-firewalled.js';
export { snatRaceUntil, dnatClashUntil, RaceShortfallError } from './scenarios/race-until.js';
export type { RaceUntilOptions, RaceUntilResult } from './scenarios/race-until.js';
export { startSeed004, seed004 } from './scenarios/seed-004.js';
export type { Seed004Run, LoopingResolver } from './scenarios/seed-004.js';
