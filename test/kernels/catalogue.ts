/**
 * The kernels of the matrix: Debian's own builds of the releases users run, fetched from the
 * Debian repositories of the suite that ships them.
 */
export type Suite = 'bullseye' | 'bookworm' | 'trixie';

export interface KernelSpec {
  /** What the command line and the summary call it. */
  readonly id: string;
  readonly suite: Suite;
  /**
   * The image package: a fixed name, or a metapackage whose dependency names the newest
   * image of the suite (`linux-image-amd64` → `linux-image-6.1.0-57-amd64`).
   */
  readonly image: { readonly name: string } | { readonly metapackage: string };
  /** The resolved image package must match this, so a suite moving on is noticed. */
  readonly imagePattern: RegExp;
  /** Further packages extracted beside the image (kernel headers for the types of modules). */
  readonly extraPackages: readonly string[];
  /** Who runs this kernel, for the summary. */
  readonly runBy: string;
}

export const kernels: readonly KernelSpec[] = [
  {
    id: '5.10',
    suite: 'bullseye',
    image: { name: 'linux-image-5.10.0-32-amd64' },
    imagePattern: /^linux-image-5\.10\.0-\d+-amd64$/,
    // 5.10 exports no BTF for modules: struct nf_conn comes from these headers.
    extraPackages: ['linux-headers-5.10.0-32-amd64', 'linux-headers-5.10.0-32-common'],
    runBy: 'Debian 11, Amazon Linux 2',
  },
  {
    id: '6.1',
    suite: 'bookworm',
    image: { metapackage: 'linux-image-amd64' },
    imagePattern: /^linux-image-6\.1\.0-\d+-amd64$/,
    extraPackages: [],
    runBy: 'Debian 12, Amazon Linux 2023, COS',
  },
  {
    id: '6.12',
    suite: 'trixie',
    image: { metapackage: 'linux-image-amd64' },
    imagePattern: /^linux-image-6\.12\.\d+\+deb13-amd64$/,
    extraPackages: [],
    runBy: 'Debian 13',
  },
];

export function kernelById(id: string): KernelSpec {
  const spec = kernels.find((kernel) => kernel.id === id);
  if (spec === undefined) {
    throw new Error(`unknown kernel "${id}"; known: ${kernels.map((k) => k.id).join(', ')}`);
  }
  return spec;
}

/** Where each suite's packages come from; the security archive carries the newest kernels. */
export function sourcesList(suite: Suite): string {
  const keyring = '[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]';
  const lines = [`deb ${keyring} http://deb.debian.org/debian ${suite} main`];
  if (suite !== 'bullseye') {
    lines.push(`deb ${keyring} http://deb.debian.org/debian-security ${suite}-security main`);
  }
  return `${lines.join('\n')}\n`;
}
