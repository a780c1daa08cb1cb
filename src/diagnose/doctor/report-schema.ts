/**
 * The JSON Schema (draft-07) of `doctor --json`. Exported so that consumers can validate what
 * they parse; the tests validate the command's real output against it.
 */
const remedy = {
  type: 'object',
  required: ['id', 'text', 'source'],
  properties: {
    id: { type: 'string' },
    text: { type: 'string' },
    yaml: { type: 'string' },
    source: { type: 'string' },
  },
  additionalProperties: false,
} as const;

const natRule = {
  type: 'object',
  required: ['backend', 'table', 'chain', 'target', 'randomFully', 'text'],
  properties: {
    backend: { enum: ['iptables-legacy', 'iptables-nft', 'nftables'] },
    table: { type: 'string' },
    chain: { type: 'string' },
    target: { enum: ['MASQUERADE', 'SNAT'] },
    randomFully: { type: 'boolean' },
    text: { type: 'string' },
  },
  additionalProperties: false,
} as const;

const container = {
  type: 'object',
  required: ['pid', 'name', 'libc', 'nameservers'],
  properties: {
    pid: { type: 'integer' },
    name: { type: 'string' },
    libc: {
      type: 'object',
      required: ['kind'],
      properties: {
        kind: { enum: ['musl', 'glibc', 'static', 'unknown'] },
        version: { type: 'string' },
        evidence: { type: 'string' },
      },
      additionalProperties: false,
    },
    resolvConf: {
      type: 'object',
      required: ['nameservers', 'search', 'options', 'warnings'],
      properties: {
        nameservers: { type: 'array', items: { type: 'string' } },
        search: { type: 'array', items: { type: 'string' } },
        options: {
          type: 'object',
          required: [
            'ndots',
            'timeout',
            'attempts',
            'singleRequest',
            'singleRequestReopen',
            'useVc',
          ],
          properties: {
            ndots: { type: 'integer', minimum: 0, maximum: 15 },
            timeout: { type: 'integer', minimum: 1, maximum: 30 },
            attempts: { type: 'integer', minimum: 1, maximum: 5 },
            singleRequest: { type: 'boolean' },
            singleRequestReopen: { type: 'boolean' },
            useVc: { type: 'boolean' },
            rotate: { type: 'boolean' },
            edns0: { type: 'boolean' },
          },
          additionalProperties: false,
        },
        warnings: { type: 'array', items: { type: 'string' } },
      },
      additionalProperties: false,
    },
    nameservers: {
      type: 'array',
      items: {
        type: 'object',
        required: ['address', 'kind'],
        properties: {
          address: { type: 'string' },
          kind: { enum: ['nodelocal', 'cluster-dns', 'loopback', 'other'] },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
} as const;

/** `--reproduce`: the lab's scenarios and the verdict on each (optional section). */
const reproduce = {
  type: 'object',
  required: ['namespaces', 'staleRemoved', 'secondsPerScenario', 'generators', 'scenarios'],
  properties: {
    namespaces: { type: 'array', items: { type: 'string', pattern: '^cro-repro-' } },
    staleRemoved: { type: 'array', items: { type: 'string', pattern: '^cro-repro-' } },
    secondsPerScenario: { type: 'integer', minimum: 1 },
    generators: {
      type: 'object',
      required: ['origin', 'dir'],
      properties: { origin: { enum: ['installed', 'built'] }, dir: { type: 'string' } },
      additionalProperties: false,
    },
    scenarios: {
      type: 'array',
      items: {
        type: 'object',
        required: [
          'scenario',
          'rounds',
          'batches',
          'durationMs',
          'datagramsSent',
          'sendErrors',
          'dropped',
          'resolved',
          'kernel',
          'hasClashResolveCounter',
          'enough',
          'verdict',
          'remedies',
          'notes',
        ],
        properties: {
          scenario: { enum: ['snat-race', 'dnat-clash'] },
          rounds: { type: 'integer', minimum: 0 },
          batches: { type: 'integer', minimum: 0 },
          durationMs: { type: 'number', minimum: 0 },
          datagramsSent: { type: 'integer', minimum: 0 },
          sendErrors: { type: 'integer', minimum: 0 },
          dropped: { type: 'integer', minimum: 0 },
          resolved: { type: 'integer', minimum: 0 },
          kernel: { type: 'object', additionalProperties: { type: 'integer' } },
          hasClashResolveCounter: { type: 'boolean' },
          enough: { type: 'boolean' },
          verdict: {
            type: 'object',
            required: ['id', 'text'],
            properties: {
              id: {
                enum: [
                  'drops-snat-races',
                  'no-snat-drop-seen',
                  'drops-dnat-clashes',
                  'resolves-dnat-clashes',
                  'no-dnat-clash-seen',
                ],
              },
              text: { type: 'string' },
            },
            additionalProperties: false,
          },
          remedies: { type: 'array', items: remedy },
          notes: { type: 'array', items: { type: 'string' } },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
} as const;

export const doctorReportSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://github.com/conntrack-race-observer/doctor-report.schema.json',
  title: 'conntrack-race-observer doctor report',
  type: 'object',
  required: ['version', 'generatedAt', 'probeMode', 'node', 'pods', 'findings'],
  properties: {
    version: { const: 1 },
    generatedAt: { type: 'string' },
    probeMode: {
      type: 'object',
      required: ['mode', 'reason'],
      properties: {
        mode: { enum: ['kprobe', 'tracepoint', 'counters-only', 'none'] },
        reason: { type: 'string' },
      },
      additionalProperties: false,
    },
    node: {
      type: 'object',
      required: [
        'status',
        'natRules',
        'natSources',
        'kubeProxyMode',
        'nodeLocalDns',
        'conntrack',
        'diagnosedAtMs',
      ],
      properties: {
        status: { const: 'diagnosed' },
        kernel: {
          type: 'object',
          required: [
            'release',
            'resolvesMatchingClashes',
            'resolvesNatClashes',
            'hasClashResolveCounter',
            'hasDropReasons',
          ],
          properties: {
            release: { type: 'string' },
            resolvesMatchingClashes: { type: 'boolean' },
            resolvesNatClashes: { type: 'boolean' },
            hasClashResolveCounter: { type: 'boolean' },
            hasDropReasons: { type: 'boolean' },
          },
          additionalProperties: false,
        },
        natRules: { type: 'array', items: natRule },
        natSources: {
          type: 'array',
          items: {
            type: 'object',
            required: ['backend', 'read'],
            properties: {
              backend: { enum: ['iptables-legacy', 'iptables-nft', 'nftables'] },
              read: { type: 'boolean' },
              detail: { type: 'string' },
            },
            additionalProperties: false,
          },
        },
        kubeProxyMode: { enum: ['iptables', 'ipvs', 'nftables', 'none-visible'] },
        nodeLocalDns: {
          type: 'object',
          required: ['present', 'addresses'],
          properties: {
            present: { type: 'boolean' },
            addresses: { type: 'array', items: { type: 'string' } },
          },
          additionalProperties: false,
        },
        conntrack: {
          type: 'object',
          properties: {
            entries: { type: 'integer', minimum: 0 },
            max: { type: 'integer', minimum: 0 },
            headroom: { type: 'number', minimum: 0, maximum: 1 },
            udpTimeoutSeconds: { type: 'integer' },
            udpStreamTimeoutSeconds: { type: 'integer' },
          },
          additionalProperties: false,
        },
        diagnosedAtMs: { type: 'number' },
      },
      additionalProperties: false,
    },
    counters: {
      type: 'object',
      required: ['intervalSeconds', 'totals', 'perSecond'],
      properties: {
        intervalSeconds: { type: 'number', exclusiveMinimum: 0 },
        totals: { type: 'object', additionalProperties: { type: 'number', minimum: 0 } },
        perSecond: { type: 'object', additionalProperties: { type: 'number', minimum: 0 } },
      },
      additionalProperties: false,
    },
    reproduce,
    pods: {
      type: 'array',
      items: {
        type: 'object',
        required: ['subject', 'addresses', 'diagnosis', 'summary', 'remedies', 'notes'],
        properties: {
          subject: { type: 'string' },
          addresses: { type: 'array', items: { type: 'string' } },
          diagnosis: {
            type: 'object',
            required: ['status', 'foundBy', 'containers', 'diagnosedAtMs'],
            properties: {
              status: { const: 'diagnosed' },
              foundBy: { enum: ['pod-uid', 'pod-ip', 'netns'] },
              netnsInode: { type: 'integer' },
              containers: { type: 'array', items: container },
              spec: { type: 'object' },
              diagnosedAtMs: { type: 'number' },
            },
            additionalProperties: false,
          },
          summary: { type: 'string' },
          remedies: { type: 'array', items: remedy },
          notes: { type: 'array', items: { type: 'string' } },
        },
        additionalProperties: false,
      },
    },
    findings: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'subject', 'text', 'remedies'],
        properties: {
          id: { type: 'string' },
          subject: { type: 'string' },
          text: { type: 'string' },
          remedies: { type: 'array', items: remedy },
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
} as const;
