import { badRequest, conflict, notFound } from '@dockyard/kit';
import type { PrismaClient } from '../generated/prisma/client.js';

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** ECR's public grantee: a group every identity, even anonymous, belongs to implicitly. */
export const ALL_USERS = 'AllUsers';

const WITH_MEMBERS = { members: { include: { user: { select: { login: true } } } } } as const;
type GroupRow = { name: string; members: { user: { login: string } }[] };
const view = (g: GroupRow) => ({ name: g.name, members: g.members.map((m) => m.user.login).sort() });

/** Groups of users; permissions granted to a group apply to its members. */
export class Groups {
  constructor(private readonly prisma: PrismaClient) {}

  async create(name: string) {
    if (!NAME.test(name)) throw badRequest(`name: "${name}" is not a valid group name`);
    if (name === ALL_USERS) throw conflict(`Group ${ALL_USERS} is built in`);
    try {
      return view(await this.prisma.group.create({ data: { name }, include: WITH_MEMBERS }));
    } catch (err) {
      if ((err as { code?: string }).code === 'P2002') throw conflict(`Group ${name} already exists`);
      throw err;
    }
  }

  /** Every group for an admin; otherwise the groups `memberLogin` belongs to. */
  async list(memberLogin?: string) {
    const where = memberLogin ? { members: { some: { user: { login: memberLogin } } } } : {};
    return (await this.prisma.group.findMany({ where, orderBy: { name: 'asc' }, include: WITH_MEMBERS })).map(view);
  }

  async get(name: string) {
    const group = await this.prisma.group.findUnique({ where: { name }, include: WITH_MEMBERS });
    if (!group) throw notFound(`Group ${name} not found`);
    return view(group);
  }

  async delete(name: string): Promise<number> {
    const { count } = await this.prisma.group.deleteMany({ where: { name } });
    if (!count) throw notFound(`Group ${name} not found`);
    return count;
  }

  private async pair(name: string, login: string) {
    const [group, user] = await Promise.all([this.prisma.group.findUnique({ where: { name } }), this.prisma.user.findUnique({ where: { login } })]);
    if (!group) throw notFound(`Group ${name} not found`);
    if (!user) throw notFound(`User ${login} not found`);
    return { groupId: group.id, userId: user.id };
  }

  async addMember(name: string, login: string) {
    const key = await this.pair(name, login);
    await this.prisma.groupMember.upsert({ where: { groupId_userId: key }, create: key, update: {} });
    return this.get(name);
  }

  async removeMember(name: string, login: string) {
    const key = await this.pair(name, login);
    await this.prisma.groupMember.deleteMany({ where: key });
    return this.get(name);
  }
}
